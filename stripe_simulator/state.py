"""The simulator's money movements: paying a charge (with Stripe's processing fee), settling it,
and the invoice life cycle (lines, totals, finalising, paying) that checkout, invoices and
subscriptions share, and starting a subscription with its first invoice.

``BillingState`` is the object ``Store`` of ``objects.py`` plus these rules; the REST
handlers and the helpers that act for a paying customer both change state only through it.
"""

from __future__ import annotations

import copy
from typing import Any

from stripe_simulator.objects import SimulatedStripeError, Store, list_object

# Simulated processing fee on every charge — a round figure like a card rate, not Stripe's price list.
FEE_BPS, FEE_FIXED = 290, 30


class BillingState(Store):
    """The store plus the money movements shared by the REST handlers and the helpers that act
    for a paying customer (``StripeSimulator.complete_checkout`` and friends)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.includable[("invoice", "payments")] = lambda inv: list_object(
            [copy.deepcopy(p) for p in self.objects("invoice_payment") if p["invoice"] == inv["id"]],
            f"/v1/invoice_payments?invoice={inv['id']}",
        )
        self.includable[("checkout.session", "line_items")] = lambda cs: list_object(
            copy.deepcopy(self.private[cs["id"]]["lines"]), f"/v1/checkout/sessions/{cs['id']}/line_items"
        )

    # -- payments -------------------------------------------------------------------------
    def pay(
        self,
        *,
        customer: str | None,
        amount: int,
        currency: str,
        pending: bool = False,
        metadata: dict[str, str] | None = None,
        transfer_group: str | None = None,
        description: str | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A PaymentIntent and its Charge, succeeded (or processing, for an async method)."""
        status = "processing" if pending else "succeeded"
        pm = self.new_id("pm")
        pi = self.make(
            "payment_intent",
            amount=amount,
            amount_received=0 if pending else amount,
            amount_capturable=0,
            currency=currency,
            customer=customer,
            status=status,
            metadata=metadata or {},
            transfer_group=transfer_group,
            description=description,
            payment_method=pm,
            capture_method="automatic",
        )
        pi["client_secret"] = f"{pi['id']}_secret_{self.token()}"
        fee = min(amount, amount * FEE_BPS // 10_000 + FEE_FIXED)
        txn = self.make(
            "balance_transaction",
            amount=amount,
            fee=fee,
            fee_details=[{"amount": fee, "currency": currency, "description": "Stripe processing fees",
                          "type": "stripe_fee", "application": None}],
            net=amount - fee,
            currency=currency,
            type="charge",
            reporting_category="charge",
            status="pending",
            description=description,
        )  # fmt: skip
        charge = self.make(
            "charge",
            amount=amount,
            amount_captured=amount,
            amount_refunded=0,
            captured=True,
            paid=not pending,
            refunded=False,
            disputed=False,
            currency=currency,
            status="pending" if pending else "succeeded",
            customer=customer,
            payment_intent=pi["id"],
            transfer_group=transfer_group,
            payment_method=pm,
            balance_transaction=txn["id"],
            description=description,
        )
        txn["source"] = charge["id"]
        charge["refunds"] = list_object([], f"/v1/charges/{charge['id']}/refunds")
        pi["latest_charge"] = charge["id"]
        if pending:
            self.emit("charge.pending", charge)
            self.emit("payment_intent.processing", pi)
        else:
            self.emit("charge.succeeded", charge)
            self.emit("payment_intent.succeeded", pi)
        return pi, charge

    def settle(self, pi: dict[str, Any]) -> None:
        """An async payment (bank debit …) that was processing has succeeded."""
        charge = self.get("charge", pi["latest_charge"])
        charge.update(status="succeeded", paid=True)
        pi.update(status="succeeded", amount_received=pi["amount"])
        self.emit("charge.succeeded", charge)
        self.emit("payment_intent.succeeded", pi)
        for payment in self.objects("invoice_payment"):
            if payment["payment"].get("payment_intent") == pi["id"] and payment["status"] == "open":
                payment.update(status="paid", amount_paid=payment["amount_requested"])
                payment["status_transitions"]["paid_at"] = self.now()
                self.mark_paid(self.get("invoice", payment["invoice"]))

    # -- invoices -------------------------------------------------------------------------
    def new_invoice(self, *, customer: str, currency: str, **fields: Any) -> dict[str, Any]:
        invoice = self.make(
            "invoice",
            customer=customer,
            currency=currency,
            status="draft",
            amount_paid=0,
            attempt_count=0,
            attempted=False,
            period_start=self.now(),
            period_end=self.now(),
            **fields,
        )
        invoice["lines"] = list_object([], f"/v1/invoices/{invoice['id']}/lines")
        self.retotal(invoice)
        return invoice

    def add_line(
        self,
        invoice: dict[str, Any],
        *,
        amount: int,
        quantity: int,
        description: str | None,
        price: dict[str, Any] | None = None,
        parent: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        unit = price["unit_amount"] if price else (amount // quantity if quantity else amount)
        line = self.make(
            "line_item",
            store=False,
            amount=amount,
            currency=invoice["currency"],
            description=description,
            invoice=invoice["id"],
            quantity=quantity,
            subtotal=amount,
            metadata=metadata or {},
            period={"start": self.now(), "end": self.now()},
            discount_amounts=[],
            discounts=[],
            taxes=[],
            pretax_credit_amounts=[],
            parent=parent,
            pricing={
                "type": "price_details",
                "unit_amount_decimal": str(unit),
                "price_details": {"price": price["id"], "product": price["product"]} if price else None,
            },
            quantity_decimal=str(quantity),
        )
        invoice["lines"]["data"].append(line)
        self.retotal(invoice)
        return line

    def retotal(self, invoice: dict[str, Any]) -> None:
        total = sum(line["amount"] for line in invoice["lines"]["data"])
        invoice.update(
            subtotal=total,
            subtotal_excluding_tax=total,
            total=total,
            total_excluding_tax=total,
            amount_due=total,
            amount_remaining=total - invoice["amount_paid"],
            total_taxes=[],
            total_discount_amounts=[],
            total_pretax_credit_amounts=[],
        )

    def finalize(self, invoice: dict[str, Any]) -> None:
        if invoice["status"] != "draft":
            raise SimulatedStripeError(
                400,
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        now = self.now()
        invoice.update(
            status="open",
            number=f"{self.token(8).upper()}-0001",
            effective_at=now,
            hosted_invoice_url=f"https://invoice.stripe.com/i/{invoice['id']}",
            invoice_pdf=f"https://pay.stripe.com/invoice/{invoice['id']}/pdf",
        )
        invoice["status_transitions"]["finalized_at"] = now
        if invoice["collection_method"] == "send_invoice":
            invoice["due_date"] = now + 86400 * (invoice.get("days_until_due") or 30)
        self.emit("invoice.finalized", invoice)
        if invoice["amount_due"] == 0:
            self.mark_paid(invoice)  # Stripe marks zero-amount invoices paid on finalization

    def pay_invoice(self, invoice: dict[str, Any], *, pending: bool = False) -> dict[str, Any]:
        """Collect what is due on an open invoice with a new PaymentIntent."""
        if invoice["status"] != "open":
            raise SimulatedStripeError(
                400, f"Invoice {invoice['id']} is {invoice['status']}, not open.", code="invoice_not_editable"
            )
        amount = invoice["amount_remaining"]
        pi, _ = self.pay(
            customer=invoice["customer"],
            amount=amount,
            currency=invoice["currency"],
            pending=pending,
            description=f"Invoice {invoice['number']}",
        )
        self.make(
            "invoice_payment",
            invoice=invoice["id"],
            amount_requested=amount,
            currency=invoice["currency"],
            amount_paid=None if pending else amount,
            is_default=True,
            status="open" if pending else "paid",
            payment={"type": "payment_intent", "payment_intent": pi["id"]},
            status_transitions={"canceled_at": None, "paid_at": None if pending else self.now()},
        )
        if not pending:
            self.mark_paid(invoice)
        return pi

    def mark_paid(self, invoice: dict[str, Any]) -> None:
        now = self.now()
        invoice.update(
            status="paid",
            amount_paid=invoice["amount_due"],
            amount_remaining=0,
            attempted=True,
            attempt_count=invoice["attempt_count"] + 1,
            next_payment_attempt=None,
        )
        invoice["status_transitions"]["paid_at"] = now
        self.emit("invoice.paid", invoice)
        self.emit("invoice.payment_succeeded", invoice)
        subscription = self.subscription_of(invoice)
        if subscription and subscription["status"] in ("past_due", "unpaid", "incomplete"):
            previous = self.update(subscription, status="active")
            self.emit("customer.subscription.updated", subscription, previous=previous)

    def subscription_of(self, invoice: dict[str, Any]) -> dict[str, Any] | None:
        details = (invoice.get("parent") or {}).get("subscription_details") or {}
        return self.find(details.get("subscription") or "")

    def start_subscription(
        self, customer: str, lines: list[dict[str, Any]], *, metadata: dict[str, str], pending: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """What Stripe does for a subscription-mode Checkout Session: a subscription for the
        session's lines and its first invoice, finalized and paid (or pending, for async)."""
        now, currency = self.now(), lines[0]["currency"]
        sub = self.make(
            "subscription",
            customer=customer,
            status="incomplete" if pending else "active",
            collection_method="charge_automatically",
            currency=currency,
            metadata=metadata,
            start_date=now,
            billing_cycle_anchor=now,
            days_until_due=None,
            discounts=[],
        )
        items = []
        for line in lines:
            price = line["price"]
            # Periods are approximate (a month is 30 days): nothing in Lode bills by them.
            seconds = {"day": 1, "week": 7, "month": 30, "year": 365}[price["recurring"]["interval"]] * 86400
            items.append(
                self.make(
                    "subscription_item",
                    store=False,
                    price=price,
                    quantity=line["quantity"],
                    subscription=sub["id"],
                    metadata={},
                    discounts=[],
                    tax_rates=[],
                    current_period_start=now,
                    current_period_end=now + seconds,
                )
            )
        sub["items"] = list_object(items, f"/v1/subscription_items?subscription={sub['id']}")
        self.emit("customer.subscription.created", sub)
        parent = {
            "type": "subscription_details",
            "quote_details": None,
            "subscription_details": {"subscription": sub["id"], "metadata": metadata},
        }
        invoice = self.new_invoice(
            customer=customer,
            currency=currency,
            billing_reason="subscription_create",
            collection_method="charge_automatically",
            auto_advance=True,
            parent=parent,
        )
        for item, line in zip(items, lines, strict=True):
            details = {
                "subscription": sub["id"],
                "subscription_item": item["id"],
                "invoice_item": None,
                "proration": False,
                "proration_details": None,
            }
            self.add_line(
                invoice,
                amount=line["amount_total"],
                quantity=line["quantity"] or 0,
                description=line["description"],
                price=item["price"],
                parent={
                    "type": "subscription_item_details",
                    "invoice_item_details": None,
                    "subscription_item_details": details,
                },
            )
        sub["latest_invoice"] = invoice["id"]
        self.emit("invoice.created", invoice)
        self.finalize(invoice)
        if invoice["status"] == "open":
            self.pay_invoice(invoice, pending=pending)
        return sub, invoice
