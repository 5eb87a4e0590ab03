"""The Stripe REST subset the simulator answers for selling: customers, products, prices, meters
and checkout (invoices and subscriptions are in ``invoicing.py``; Connect, transfers
and refunds in ``payouts.py``).

One small handler per endpoint.

Each handler is registered with the SDK ``TypedDict`` its parameters are checked against
(``stripe_simulator/params.py``) and the top-level parameters it implements: one Stripe accepts
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

from stripe_simulator.objects import SimulatedStripeError
from stripe_simulator.state import BillingState
from stripe_simulator.wire import ID, route

Params = dict[str, Any]


def bad(message: str, param: str | None = None, code: str | None = None) -> SimulatedStripeError:
    return SimulatedStripeError(400, message, param=param, code=code)


def need(q: Params, key: str, name: str | None = None) -> Any:
    """``q[key]``, or Stripe's parameter_missing (for keys the TypedDict leaves optional)."""
    if q.get(key) in (None, ""):
        raise bad(f"Missing required param: {name or key}.", name or key, "parameter_missing")
    return q[key]


def metadata_of(q: Params, old: dict[str, str] | None = None) -> dict[str, str]:
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
        metadata=metadata_of(q),
        invoice_prefix=s.token(8).upper(),
    )


@route("POST", "/v1/products", p.ProductCreateParams, "name description metadata active")
def create_product(s: BillingState, q: Params) -> dict[str, Any]:
    return s.make(
        "product",
        name=q["name"],
        description=q.get("description"),
        metadata=metadata_of(q),
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
            metadata=metadata_of(data),
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
        metadata=metadata_of(q),
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
        metadata=metadata_of(q),
        currency=lines[0]["currency"],
        amount_subtotal=amount,
        amount_total=amount,
        expires_at=q.get("expires_at", s.now() + 86400),
        payment_method_types=["card"],
        subscription=None,
        invoice=None,
    )
    session["url"] = f"{s.checkout_page}/{session['id']}"
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
