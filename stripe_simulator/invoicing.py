"""The Stripe REST subset the simulator answers for invoices and subscriptions: creating and
finalising an invoice, its items (metered late usage arrives this way), sending it for payment,
and pausing or cancelling a subscription.

Registered like ``selling.py``'s handlers, each with its SDK ``TypedDict`` and the
parameters it implements.
"""

from __future__ import annotations

from typing import Any

import stripe.params as p

from stripe_simulator.selling import Params, bad, metadata_of, need, new_price
from stripe_simulator.state import BillingState
from stripe_simulator.wire import ID, route


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
        metadata=metadata_of(q),
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
        metadata=metadata_of(q),
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
        changes["metadata"] = metadata_of(q, sub["metadata"])
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
