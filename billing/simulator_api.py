"""The Stripe REST subset the simulator answers: one small handler per endpoint.

Each handler is registered with the SDK ``TypedDict`` its parameters are checked against
(``billing/stripe_params.py``) and the top-level parameters it implements: one Stripe accepts
but the simulator would ignore is refused (``simulator_unsupported_parameter``), not dropped.
Handlers get the coerced parameters and the path ids, change the ``BillingState`` and return
the object to render; refusals are ``SimulatedStripeError`` with Stripe's status, code, param.
"""

from __future__ import annotations

import re
from typing import Any

import stripe.params as p
import stripe.params.billing as pb
import stripe.params.checkout as pc

from billing.simulator_http import ID, route
from billing.simulator_objects import BillingState, SimulatedStripeError, list_object

Params = dict[str, Any]


def bad(message: str, param: str | None = None, code: str | None = None) -> SimulatedStripeError:
    return SimulatedStripeError(400, message, param=param, code=code)


def need(q: Params, key: str, name: str | None = None) -> Any:
    """``q[key]``, or Stripe's parameter_missing (for keys the TypedDict leaves optional)."""
    if q.get(key) in (None, ""):
        raise bad(f"Missing required param: {name or key}.", name or key, "parameter_missing")
    return q[key]


def _metadata(q: Params, old: dict[str, str] | None = None) -> dict[str, str]:
    """Merge ``metadata`` the Stripe way: "" unsets a key, metadata="" unsets all."""
    new = q.get("metadata", {})
    merged = {} if new == "" else {**(old or {}), **new}
    return {key: value for key, value in merged.items() if value != ""}


# -- customers, products, prices, meters -------------------------------------------------------
@route("POST", "/v1/customers", p.CustomerCreateParams, "email name description phone metadata")
def create_customer(s: BillingState, q: Params) -> dict[str, Any]:
    return s.make(
        "customer",
        email=q.get("email"),
        name=q.get("name"),
        description=q.get("description"),
        phone=q.get("phone"),
        metadata=_metadata(q),
        invoice_prefix=s.token(8).upper(),
    )


@route("POST", "/v1/products", p.ProductCreateParams, "name description metadata active")
def create_product(s: BillingState, q: Params) -> dict[str, Any]:
    return s.make(
        "product",
        name=q["name"],
        description=q.get("description"),
        metadata=_metadata(q),
        active=q.get("active", True),
        type="service",
        updated=s.now(),
    )


def new_price(s: BillingState, q: Params, *, name: str = "", active: bool = True) -> dict[str, Any]:
    """A price from PriceCreateParams or a ``price_data`` hash (inline prices are inactive)."""
    at = lambda key: f"{name}[{key}]" if name else key  # noqa: E731 - the param's full name
    need(q, "unit_amount", at("unit_amount"))
    if q.get("product_data"):
        data = q["product_data"]
        product = s.make(
            "product",
            name=data["name"],
            description=data.get("description"),
            metadata=_metadata(data),
            active=True,
            type="service",
            updated=s.now(),
        )["id"]
    else:
        product = s.get("product", need(q, "product", at("product")), at("product"))["id"]
    recurring = None
    if rec := q.get("recurring"):
        usage = rec.get("usage_type", "licensed")
        if usage == "metered" and not rec.get("meter"):
            raise bad("A metered price needs a meter: pass recurring[meter].", at("recurring[meter]"))
        if rec.get("meter"):
            s.get("billing.meter", rec["meter"], at("recurring[meter]"))
        recurring = {
            "interval": rec["interval"],
            "interval_count": rec.get("interval_count", 1),
            "meter": rec.get("meter"),
            "usage_type": usage,
            "trial_period_days": None,
        }
    return s.make(
        "price",
        currency=q["currency"].lower(),
        product=product,
        unit_amount=q["unit_amount"],
        unit_amount_decimal=str(q["unit_amount"]),
        recurring=recurring,
        active=active,
        type="recurring" if recurring else "one_time",
        billing_scheme="per_unit",
        metadata=_metadata(q),
        nickname=q.get("nickname"),
        lookup_key=q.get("lookup_key"),
        tax_behavior=q.get("tax_behavior", "unspecified"),
    )


@route(
    "POST",
    "/v1/prices",
    p.PriceCreateParams,
    "currency product product_data unit_amount recurring metadata nickname lookup_key tax_behavior",
)
def create_price(s: BillingState, q: Params) -> dict[str, Any]:
    return new_price(s, q)


@route(
    "POST",
    "/v1/billing/meters",
    pb.MeterCreateParams,
    "display_name event_name default_aggregation customer_mapping value_settings",
)
def create_meter(s: BillingState, q: Params) -> dict[str, Any]:
    # Stripe refuses a second active meter for an event name; the exact code is our choice.
    if _meter_for(s, q["event_name"]):
        raise bad(f"An active meter for '{q['event_name']}' exists.", "event_name", "resource_already_exists")
    by_id = {"event_payload_key": "stripe_customer_id", "type": "by_id"}
    return s.make(
        "billing.meter",
        display_name=q["display_name"],
        event_name=q["event_name"],
        default_aggregation=q["default_aggregation"],
        status="active",
        updated=s.now(),
        customer_mapping=q.get("customer_mapping") or by_id,
        value_settings=q.get("value_settings") or {"event_payload_key": "value"},
        status_transitions={"deactivated_at": None},
        event_time_window=None,
    )


def _meter_for(s: BillingState, event_name: str) -> dict[str, Any] | None:
    return next(
        (m for m in s.objects("billing.meter") if m["event_name"] == event_name and m["status"] == "active"), None
    )


@route("POST", "/v1/billing/meter_events", pb.MeterEventCreateParams, "event_name payload identifier timestamp")
def create_meter_event(s: BillingState, q: Params) -> dict[str, Any]:
    now, ts = s.now(), q.get("timestamp", s.now())
    if not now - 35 * 86400 <= ts <= now + 300:
        raise bad("Timestamp must be within the past 35 days and at most 5 minutes ahead.", "timestamp")
    # Stripe checks these asynchronously (meter error reports); the simulator refuses at once so
    # a misconfigured meter shows up in the test that caused it.
    meter = _meter_for(s, q["event_name"])
    if meter is None:
        raise bad(f"No active meter with event_name '{q['event_name']}'.", "event_name")
    payload = q["payload"]
    customer_key = meter["customer_mapping"]["event_payload_key"]
    value_key = meter["value_settings"]["event_payload_key"]
    s.get("customer", payload.get(customer_key) or "", f"payload[{customer_key}]")
    if not re.fullmatch(r"-?\d+(\.\d+)?", payload.get(value_key, "")):
        raise bad(f"payload[{value_key}] must be a number.", f"payload[{value_key}]")
    identifier = q.get("identifier") or s.token()
    # Stripe promises uniqueness of `identifier` "within a rolling period of at least 24 hours". We
    # refuse a repeat inside that window with 400 resource_already_exists (our choice of code);
    # the gateway should treat that answer as "already recorded".
    earlier = s.by_key("billing.meter_event").get(identifier)
    if earlier and earlier["created"] > now - 86400:
        raise bad(f"A meter event '{identifier}' already exists.", "identifier", "resource_already_exists")
    if earlier:  # outside the window: the old event stays, under another key
        s.put("billing.meter_event", earlier, key=f"{identifier}@{earlier['created']}")
    event = {
        "object": "billing.meter_event",
        "created": now,
        "event_name": q["event_name"],
        "identifier": identifier,
        "livemode": False,
        "payload": payload,
        "timestamp": ts,
    }
    s.put("billing.meter_event", event, key=identifier)
    return event


# -- checkout ----------------------------------------------------------------------------------
def _checkout_line(s: BillingState, item: Params, name: str) -> dict[str, Any]:
    if ("price" in item) == ("price_data" in item):
        raise bad(f"You must specify either `price` or `price_data` in {name}.", name)
    if item.get("price"):
        price = s.get("price", item["price"], f"{name}[price]")
    else:
        price = new_price(s, item["price_data"], name=f"{name}[price_data]", active=False)
    metered = (price["recurring"] or {}).get("usage_type") == "metered"
    if metered and "quantity" in item:
        raise bad(
            f"Quantity should not be specified where usage_type is `metered`. Remove quantity from `{name}`.",
            f"{name}[quantity]",
        )
    quantity = None if metered else need(item, "quantity", f"{name}[quantity]")
    amount = 0 if metered else price["unit_amount"] * quantity
    product = s.get("product", price["product"])
    return s.make(
        "item",
        store=False,
        price=dict(price),
        quantity=quantity,
        currency=price["currency"],
        description=product["name"],
        amount_subtotal=amount,
        amount_total=amount,
        amount_discount=0,
        amount_tax=0,
        metadata=item.get("metadata") or {},
    )


@route(
    "POST",
    "/v1/checkout/sessions",
    pc.SessionCreateParams,
    "mode line_items customer customer_email success_url cancel_url metadata client_reference_id "
    "payment_intent_data subscription_data expires_at",
)
def create_session(s: BillingState, q: Params) -> dict[str, Any]:
    mode = need(q, "mode")  # optional in the TypedDict, but Lode always states it: refuse to guess
    if mode == "setup":
        raise bad("The simulator does not implement setup mode.", "mode", "simulator_unsupported_parameter")
    if "payment_intent_data" in q and mode != "payment":
        raise bad(f"You can not pass `payment_intent_data` in `{mode}` mode.", "payment_intent_data")
    if "subscription_data" in q and mode != "subscription":
        raise bad(f"You can not pass `subscription_data` in `{mode}` mode.", "subscription_data")
    if q.get("customer") and q.get("customer_email"):
        raise bad("You may only specify one of these parameters: customer, customer_email.", "customer_email")
    if q.get("customer"):
        s.get("customer", q["customer"], "customer")
    lines = [_checkout_line(s, item, f"line_items[{i}]") for i, item in enumerate(need(q, "line_items"))]
    if len({line["currency"] for line in lines}) > 1:
        raise bad("All line items must have the same currency.", "line_items")
    recurring = any(line["price"]["recurring"] for line in lines)
    if mode == "payment" and recurring:
        raise bad(
            "You specified `payment` mode but passed a recurring price. Either switch to "
            "`subscription` mode or use only one-time prices.",
            "mode",
        )
    if mode == "subscription" and not recurring:
        raise bad("You must provide at least one recurring price in `subscription` mode.", "mode")
    amount = sum(line["amount_total"] for line in lines)
    session = s.make(
        "checkout.session",
        mode=mode,
        status="open",
        payment_status="unpaid",
        customer=q.get("customer"),
        customer_email=q.get("customer_email"),
        success_url=q.get("success_url"),
        cancel_url=q.get("cancel_url"),
        client_reference_id=q.get("client_reference_id"),
        metadata=_metadata(q),
        currency=lines[0]["currency"],
        amount_subtotal=amount,
        amount_total=amount,
        expires_at=q.get("expires_at", s.now() + 86400),
        payment_method_types=["card"],
        subscription=None,
        invoice=None,
    )
    session["url"] = f"https://checkout.stripe.com/c/pay/{session['id']}"
    s.private[session["id"]] = {
        "lines": lines,
        "payment_intent_data": q.get("payment_intent_data", {}),
        "subscription_data": q.get("subscription_data", {}),
    }
    return session


@route("POST", f"/v1/checkout/sessions/{ID}/expire", pc.SessionExpireParams)
def expire_session(s: BillingState, q: Params, id_: str) -> dict[str, Any]:
    session = s.get("checkout.session", id_)
    if session["status"] != "open":
        raise bad(
            f'Only Checkout Sessions with a status in ["open"] can be expired; this one is "{session["status"]}".'
        )
    s.update(session, status="expired", url=None)
    s.emit("checkout.session.expired", session)
    return session


# -- invoices ----------------------------------------------------------------------------------
@route(
    "POST",
    "/v1/invoices",
    p.InvoiceCreateParams,
    "customer collection_method days_until_due metadata auto_advance description currency",
)
def create_invoice(s: BillingState, q: Params) -> dict[str, Any]:
    customer = s.get("customer", need(q, "customer"), "customer")
    method = q.get("collection_method", "charge_automatically")
    if method == "send_invoice":
        need(q, "days_until_due")
    elif "days_until_due" in q:
        raise bad("You can only set `days_until_due` if `collection_method` is `send_invoice`.", "days_until_due")
    # Without an explicit currency the first invoice item decides it (see create_invoice_item).
    currency = q.get("currency") or customer["currency"]
    invoice = s.new_invoice(
        customer=customer["id"],
        currency=currency or "usd",
        collection_method=method,
        days_until_due=q.get("days_until_due"),
        metadata=_metadata(q),
        auto_advance=q.get("auto_advance", False),
        description=q.get("description"),
        billing_reason="manual",
        customer_email=customer["email"],
        customer_name=customer["name"],
    )
    s.private[invoice["id"]] = {"currency_fixed": bool(currency)}
    return invoice


@route(
    "POST",
    "/v1/invoiceitems",
    p.InvoiceItemCreateParams,
    "customer invoice amount currency description metadata price_data pricing quantity",
)
def create_invoice_item(s: BillingState, q: Params) -> dict[str, Any]:
    customer = s.get("customer", need(q, "customer"), "customer")["id"]
    invoice = s.get("invoice", q["invoice"], "invoice") if q.get("invoice") else None
    if invoice and invoice["customer"] != customer:
        raise bad("The invoice belongs to another customer.", "invoice")
    if invoice and invoice["status"] != "draft":
        raise bad("You can only add invoice items to draft invoices.", "invoice", "invoice_not_editable")
    given = [key for key in ("amount", "price_data", "pricing") if key in q]
    if len(given) != 1:
        raise bad("Pass exactly one of amount, price_data or pricing.", given[1] if given else "amount")
    quantity, price = q.get("quantity", 1), None
    if "amount" in q:
        amount = q["amount"]
        currency = q.get("currency") or (invoice and invoice["currency"]) or need(q, "currency")
    else:
        if "price_data" in q:
            price = new_price(s, q["price_data"], name="price_data", active=False)
        else:
            price = s.get("price", q["pricing"].get("price") or "", "pricing[price]")
        amount, currency = price["unit_amount"] * quantity, price["currency"]
    currency = currency.lower()
    if invoice and currency != invoice["currency"]:
        if invoice["lines"]["data"] or s.private[invoice["id"]]["currency_fixed"]:
            raise bad(f"The currency {currency} does not match the invoice's.", "currency")
        invoice["currency"] = currency
    pricing = {
        "type": "price_details",
        "unit_amount_decimal": str(amount // max(quantity, 1)),
        "price_details": price and {"price": price["id"], "product": price["product"]},
    }
    item = s.make(
        "invoiceitem",
        customer=customer,
        invoice=invoice and invoice["id"],
        amount=amount,
        currency=currency,
        description=q.get("description"),
        metadata=_metadata(q),
        quantity=quantity,
        net_amount=amount,
        date=s.now(),
        proration=False,
        discountable=True,
        discounts=[],
        tax_rates=[],
        period={"start": s.now(), "end": s.now()},
        pricing=pricing,
    )
    if invoice:
        details = {"invoice_item": item["id"], "proration": False, "proration_details": None, "subscription": None}
        s.add_line(
            invoice,
            amount=amount,
            quantity=quantity,
            description=item["description"],
            price=price,
            metadata=item["metadata"],
            parent={"type": "invoice_item_details", "subscription_item_details": None, "invoice_item_details": details},
        )
    return item


@route("POST", f"/v1/invoices/{ID}/finalize", p.InvoiceFinalizeInvoiceParams, "auto_advance")
def finalize_invoice(s: BillingState, q: Params, id_: str) -> dict[str, Any]:
    invoice = s.get("invoice", id_)
    s.finalize(invoice)
    return invoice


@route("POST", f"/v1/invoices/{ID}/send", p.InvoiceSendInvoiceParams)
def send_invoice(s: BillingState, q: Params, id_: str) -> dict[str, Any]:
    invoice = s.get("invoice", id_)
    if invoice["collection_method"] != "send_invoice":
        raise bad("You can only manually send an invoice if its collection method is 'send_invoice'.")
    if invoice["status"] == "draft":
        s.finalize(invoice)  # Stripe finalizes a draft before sending it
    if invoice["status"] != "open":
        raise bad(f"You can only send open invoices; this one is {invoice['status']}.")
    s.emit("invoice.sent", invoice)
    return invoice


# -- subscriptions -----------------------------------------------------------------------------
@route("POST", f"/v1/subscriptions/{ID}", p.SubscriptionUpdateParams, "pause_collection metadata")
def update_subscription(s: BillingState, q: Params, id_: str) -> dict[str, Any]:
    sub = s.get("subscription", id_)
    if sub["status"] == "canceled":
        raise bad("A canceled subscription can only update its cancellation_details and metadata.")
    changes: dict[str, Any] = {}
    if "pause_collection" in q:
        pause = q["pause_collection"] or None  # "" resumes collection
        changes["pause_collection"] = pause and {"resumes_at": None, **pause}
    if "metadata" in q:
        changes["metadata"] = _metadata(q, sub["metadata"])
    if previous := s.update(sub, **changes):
        s.emit("customer.subscription.updated", sub, previous=previous)
    return sub


@route("DELETE", f"/v1/subscriptions/{ID}", p.SubscriptionCancelParams, "cancellation_details invoice_now prorate")
def cancel_subscription(s: BillingState, q: Params, id_: str) -> dict[str, Any]:
    sub = s.get("subscription", id_)
    if sub["status"] == "canceled":
        raise bad(f"The subscription {id_} has already been canceled.")
    details = q.get("cancellation_details") or {}
    why = {
        "reason": "cancellation_requested",
        "comment": details.get("comment") or None,
        "feedback": details.get("feedback") or None,
    }
    s.update(sub, status="canceled", canceled_at=s.now(), ended_at=s.now(), cancellation_details=why)
    s.emit("customer.subscription.deleted", sub)
    return sub


# -- Connect: accounts, links, transfers -------------------------------------------------------
@route(
    "POST",
    "/v1/accounts",
    p.AccountCreateParams,
    "type controller country email capabilities metadata business_type default_currency",
)
def create_account(s: BillingState, q: Params) -> dict[str, Any]:
    if not q.get("controller"):
        need(q, "type")
    requested = [name for name, cap in (q.get("capabilities") or {}).items() if cap.get("requested")]
    if q.get("type") == "express" and not requested:
        raise bad("Express accounts must request the transfers or card_payments capability.", "capabilities")
    controller = {"type": "application", "is_controller": True, **(q.get("controller") or {})}
    account = s.make(
        "account",
        type=q.get("type", "none"),
        country=q.get("country", "US"),
        email=q.get("email"),
        metadata=_metadata(q),
        business_type=q.get("business_type"),
        default_currency=q.get("default_currency", "usd"),
        controller=controller,
        capabilities=dict.fromkeys(requested, "inactive"),
        charges_enabled=False,
        payouts_enabled=False,
        details_submitted=False,
    )
    account["external_accounts"] = list_object([], f"/v1/accounts/{account['id']}/external_accounts")
    return account


@route("POST", "/v1/account_links", p.AccountLinkCreateParams, "account refresh_url return_url type")
def create_account_link(s: BillingState, q: Params) -> dict[str, Any]:
    account = s.get("account", q["account"], "account")
    flavour = "e" if account["type"] == "express" else "s"
    return {
        "object": "account_link",
        "created": s.now(),
        "expires_at": s.now() + 300,
        "url": f"https://connect.stripe.com/setup/{flavour}/{account['id']}/{s.token(12)}",
    }


@route(
    "POST",
    "/v1/transfers",
    p.TransferCreateParams,
    "amount currency destination source_transaction transfer_group metadata description",
)
def create_transfer(s: BillingState, q: Params) -> dict[str, Any]:
    amount = need(q, "amount")  # NotRequired in the TypedDict, but Lode always sends it
    if amount <= 0:
        raise bad("Invalid positive integer", "amount", "parameter_invalid_integer")
    account = s.get("account", q["destination"], "destination")
    if account["capabilities"].get("transfers") != "active":
        raise bad(
            "Your destination account needs to have at least one of the following capabilities "
            "enabled: transfers, crypto_transfers, legacy_payments",
            "destination",
            "insufficient_capabilities_for_transfer",
        )
    currency = q["currency"].lower()
    if source := q.get("source_transaction"):
        charge = s.get("charge", source, "source_transaction")
        if charge["currency"] != currency:
            raise bad("The transfer's currency must match the source transaction's.", "currency")
        used = sum(t["amount"] for t in s.objects("transfer") if t["source_transaction"] == source)
        if used + amount > charge["amount"]:
            raise bad(
                f"The transfer amount exceeds what is left on source transaction {source} ({charge['amount'] - used}).",
                "amount",
                "balance_insufficient",
            )
    transfer = s.make(
        "transfer",
        amount=amount,
        amount_reversed=0,
        currency=currency,
        destination=account["id"],
        destination_payment=s.new_id("py"),
        source_transaction=source,
        transfer_group=q.get("transfer_group"),
        metadata=_metadata(q),
        description=q.get("description"),
        reversed=False,
        balance_transaction=s.new_id("txn"),
    )
    transfer["reversals"] = list_object([], f"/v1/transfers/{transfer['id']}/reversals")
    s.emit("transfer.created", transfer)
    return transfer


@route("POST", f"/v1/transfers/{ID}/reversals", p.TransferReversalCreateParams, "amount metadata description")
def reverse_transfer(s: BillingState, q: Params, id_: str) -> dict[str, Any]:
    transfer = s.get("transfer", id_)
    left = transfer["amount"] - transfer["amount_reversed"]
    amount = q.get("amount", left)
    if amount <= 0 or amount > left:
        raise bad(
            f"Transfer reversal amount ({amount}) is greater than the amount left on the transfer ({left}).", "amount"
        )
    reversal = s.make(
        "transfer_reversal",
        amount=amount,
        currency=transfer["currency"],
        transfer=id_,
        metadata=_metadata(q),
        balance_transaction=s.new_id("txn"),
        destination_payment_refund=s.new_id("pyr"),
        source_refund=None,
    )
    transfer["reversals"]["data"].insert(0, reversal)
    previous = s.update(transfer, amount_reversed=transfer["amount_reversed"] + amount, reversed=amount == left)
    s.emit("transfer.reversed", transfer, previous=previous)
    return reversal


# -- refunds -----------------------------------------------------------------------------------
@route("POST", "/v1/refunds", p.RefundCreateParams, "charge payment_intent amount reason metadata")
def create_refund(s: BillingState, q: Params) -> dict[str, Any]:
    if q.get("charge"):
        charge = s.get("charge", q["charge"], "charge")
        if q.get("payment_intent") and q["payment_intent"] != charge["payment_intent"]:
            raise bad("The charge does not belong to the payment_intent.", "payment_intent")
    elif q.get("payment_intent"):
        intent = s.get("payment_intent", q["payment_intent"], "payment_intent")
        charge = s.get("charge", intent["latest_charge"] or "", "payment_intent")
    else:
        raise bad(
            "One of the following params should be provided for this request: payment_intent or charge.",
            "charge",
            "parameter_missing",
        )
    if any(d["charge"] == charge["id"] and d["status"] != "won" for d in s.objects("dispute")):
        raise bad(f"Charge {charge['id']} has been charged back; cannot issue a refund.", code="charge_disputed")
    left = charge["amount"] - charge["amount_refunded"]
    if left == 0:
        raise bad(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded")
    amount = q.get("amount", left)
    if amount <= 0 or amount > left:
        raise bad(
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
            "amount",
            "amount_too_large",
        )
    refund = s.make(
        "refund",
        amount=amount,
        charge=charge["id"],
        currency=charge["currency"],
        payment_intent=charge["payment_intent"],
        reason=q.get("reason"),
        metadata=_metadata(q),
        status="succeeded",
        balance_transaction=s.new_id("txn"),
        customer=charge["customer"],
    )
    charge["refunds"]["data"].insert(0, refund)
    previous = s.update(charge, amount_refunded=charge["amount_refunded"] + amount, refunded=amount == left)
    s.emit("refund.created", refund)
    s.emit("charge.refunded", charge, previous=previous)
    return refund
