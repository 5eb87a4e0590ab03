"""The simulator's in-memory Stripe state: objects, ids, lists, expansion and events.

Every object starts as a deep copy of Stripe's own sample of that type (``fixtures3.json``
from stripe-mock, under ``resources``), with the sample's incidental values (discounts,
shipping costs, foreign ids) reset, and then the fields the request set. So responses carry
the full set of fields a real response has, and the SDK hydrates them like real ones.

Only the simulator uses this module; it is not a Stripe client. See ``billing/simulator.py``.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import random
import string
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from stripe._api_version import _ApiVersion

# ../shared/stripe/fixtures3.json next to the repository; LODE_STRIPE_FIXTURES overrides it.
# Without the file the objects carry only the fields the simulator sets.
DEFAULT_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "stripe" / "fixtures3.json"


def _nulls(*fields: str) -> dict[str, Any]:
    return dict.fromkeys(fields)


# Fixture values that describe some other sample object rather than a fresh one.
_RESETS: dict[str, dict[str, Any]] = {
    "customer": _nulls("discount", "currency", "shipping", "address"),
    "checkout.session": _nulls(
        "after_expiration",
        "consent",
        "consent_collection",
        "customer_details",
        "collected_information",
        "currency_conversion",
        "shipping_cost",
        "shipping_address_collection",
        "permissions",
        "custom_text",
        "payment_method_configuration_details",
        "payment_intent",
        "amount_subtotal",
        "amount_total",
        "currency",
        "invoice_creation",
    )
    | {
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "automatic_tax": {"enabled": False, "liability": None, "status": None, "provider": None},
    },
    "payment_intent": _nulls(
        "last_payment_error",
        "next_action",
        "processing",
        "transfer_data",
        "canceled_at",
        "payment_method_configuration_details",
        "latest_charge",
    ),
    "charge": _nulls("transfer_data", "source", "description", "receipt_url"),
    "invoice": _nulls(
        "from_invoice",
        "last_finalization_error",
        "parent",
        "shipping_cost",
        "due_date",
        "effective_at",
        "next_payment_attempt",
        "webhooks_delivered_at",
        "number",
        "hosted_invoice_url",
        "invoice_pdf",
    )
    | {
        "amount_overpaid": 0,
        "issuer": {"type": "self"},
        "status_transitions": _nulls("finalized_at", "marked_uncollectible_at", "paid_at", "voided_at"),
    },
    "invoiceitem": {"parent": None, "quantity_decimal": "1"},
    "subscription": _nulls(
        "cancel_at",
        "canceled_at",
        "ended_at",
        "pause_collection",
        "pending_update",
        "trial_end",
        "trial_start",
        "transfer_data",
        "billing_thresholds",
        "billing_cycle_anchor_config",
        "latest_invoice",
        "next_pending_invoice_item_invoice",
        "pending_invoice_item_interval",
    )
    | {"cancel_at_period_end": False, "billing_schedules": []},
    "price": _nulls("transform_quantity", "custom_unit_amount", "lookup_key"),
    "product": _nulls("package_dimensions", "default_price", "description"),
    "refund": _nulls("source_transfer_reversal", "transfer_reversal"),
    "dispute": {"enhanced_eligibility_types": [], "balance_transactions": []},
    "account": _nulls("email", "business_type"),
    "item": {"adjustable_quantity": None, "metadata": {}},
    "subscription_item": _nulls("plan", "billing_thresholds"),
}
_PREFIXES = {  # Stripe's id prefixes (cs_test_ as in test mode)
    "customer": "cus",
    "checkout.session": "cs_test",
    "payment_intent": "pi",
    "charge": "ch",
    "invoice": "in",
    "invoice_payment": "inpay",
    "invoiceitem": "ii",
    "subscription": "sub",
    "price": "price",
    "product": "prod",
    "billing.meter": "mtr",
    "transfer": "tr",
    "transfer_reversal": "trr",
    "refund": "re",
    "dispute": "du",
    "account": "acct",
    "event": "evt",
    "line_item": "il",
    "subscription_item": "si",
    "item": "li",
}


@functools.cache
def load_fixtures(path: str | None = None) -> Mapping[str, Any]:
    """Stripe's sample objects by type (empty when the file is not there)."""
    file = Path(path or os.environ.get("LODE_STRIPE_FIXTURES") or DEFAULT_FIXTURES)
    return json.loads(file.read_text("utf-8"))["resources"] if file.exists() else {}


class SimulatedStripeError(Exception):
    """A Stripe error response: rendered as ``{"error": {...}}`` with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = {"type": type, "message": message, **extra}
        if code:
            self.error["code"] = code
            self.error["doc_url"] = f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}"
        if param:
            self.error["param"] = param

    def body(self) -> dict[str, Any]:
        return {"error": self.error}


def missing(kind: str, id_: str, param: str | None = None) -> SimulatedStripeError:
    # A missing id in the URL is a 404; one named by a parameter is a 400 (as Stripe answers).
    return SimulatedStripeError(400 if param else 404, f"No such {kind}: '{id_}'", code="resource_missing", param=param)


def list_object(data: list[dict[str, Any]], url: str, has_more: bool = False) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


class Store:
    """Objects by id and kind, with Stripe-like ids, lists, expansion and events."""

    def __init__(self, *, seed: int | None = None, fixtures_path: str | None = None) -> None:
        self.fixtures = load_fixtures(fixtures_path)
        self.rng = random.Random(seed)
        self.clock_offset = 0
        self._by_id: dict[str, dict[str, Any]] = {}
        self._kinds: dict[str, dict[str, dict[str, Any]]] = {}
        self._seq: dict[str, int] = {}
        # What Stripe keeps about an object but does not show (checkout line items …), by id.
        self.private: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.undelivered: list[str] = []  # event ids waiting for the webhook sink
        self.request: dict[str, str | None] = {"id": None, "idempotency_key": None}
        # Fields Stripe returns only when asked for with expand[] ("includable" fields).
        self.includable: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] = {}

    # -- ids, time, creation ------------------------------------------------------------
    def now(self) -> int:
        return int(time.time()) + self.clock_offset

    def token(self, n: int = 24) -> str:
        return "".join(self.rng.choices(string.ascii_letters + string.digits, k=n))

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{self.token()}"

    def template(self, kind: str) -> dict[str, Any]:
        obj = copy.deepcopy(self.fixtures.get(kind, {}))
        obj.update(copy.deepcopy(_RESETS.get(kind, {})))
        return obj

    def make(self, kind: str, *, store: bool = True, **fields: Any) -> dict[str, Any]:
        """A new object of ``kind`` from Stripe's sample, with ``fields`` set (and stored)."""
        obj = self.template(kind)
        obj.update(object=kind, created=self.now(), livemode=False)
        obj["id"] = fields.pop("id", None) or self.new_id(_PREFIXES[kind])
        obj.update(fields)
        if "metadata" in obj and obj["metadata"] is None:
            obj["metadata"] = {}
        if store:
            self.put(kind, obj)
        return obj

    def put(self, kind: str, obj: dict[str, Any], key: str | None = None) -> None:
        """Store ``obj``; objects without an id (meter events) are keyed by ``key``."""
        key = key or obj["id"]
        if "id" in obj:
            self._by_id[obj["id"]] = obj
        self._kinds.setdefault(kind, {})[key] = obj
        self._seq.setdefault(key, len(self._seq))

    # -- lookup -------------------------------------------------------------------------
    def get(self, kind: str, id_: str, param: str | None = None) -> dict[str, Any]:
        obj = self._kinds.get(kind, {}).get(id_)
        if obj is None:
            raise missing(kind, id_, param)
        return obj

    def find(self, id_: str) -> dict[str, Any] | None:
        return self._by_id.get(id_)

    def by_key(self, kind: str) -> dict[str, dict[str, Any]]:
        return self._kinds.get(kind, {})

    def savepoint(self) -> tuple[int, int]:
        return len(self._seq), len(self.events)

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget objects and events created since ``mark`` (a request that ended in an error)."""
        for key in [k for k, n in self._seq.items() if n >= mark[0]]:
            del self._seq[key]
            self._by_id.pop(key, None)
            self.private.pop(key, None)
            for objects in self._kinds.values():
                objects.pop(key, None)
        del self.events[mark[1] :]
        self.undelivered = [i for i in self.undelivered if i in self._by_id]

    def objects(self, kind: str) -> list[dict[str, Any]]:
        return list(self._kinds.get(kind, {}).values())

    def page(
        self, kind: str, url: str, params: Mapping[str, Any], where: Callable[[dict[str, Any]], bool] = lambda _: True
    ) -> dict[str, Any]:
        """A list response: newest first, ``limit`` (1–100, default 10) and ``starting_after``."""
        items = sorted(
            (o for o in self.objects(kind) if where(o)),
            key=lambda o: (o.get("created", 0), self._seq[o.get("id", "")]),
            reverse=True,
        )
        limit = params.get("limit", 10)
        if not 1 <= limit <= 100:
            raise SimulatedStripeError(400, "Invalid limit: must be between 1 and 100", param="limit")
        if after := params.get("starting_after"):
            ids = [o["id"] for o in items]
            if after not in ids:
                raise missing(kind, after, "starting_after")
            items = items[ids.index(after) + 1 :]
        return list_object(items[:limit], url, len(items) > limit)  # rendered (expand[]) by the caller

    # -- rendering with expand[] ----------------------------------------------------------
    def render(self, obj: dict[str, Any], expand: list[str] | None = None) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        for path in expand or []:
            self._expand(out, path.split("."), path)
        return out

    def _expand(self, node: Any, parts: list[str], path: str) -> None:
        head, rest = parts[0], parts[1:]
        if isinstance(node, dict) and node.get("object") == "list" and head == "data":
            for item in node["data"]:
                if rest:
                    self._expand(item, rest, path)
            return
        cannot = SimulatedStripeError(400, f"This property cannot be expanded ({path}).", param="expand")
        builder = self.includable.get((node.get("object", ""), head)) if isinstance(node, dict) else None
        if not isinstance(node, dict) or (head not in node and builder is None):
            raise cannot
        value = builder(node) if builder else node[head]
        if isinstance(value, str):  # an id: expandable when it names a stored object
            found = self.find(value)
            if found is None:
                raise cannot
            value = copy.deepcopy(found)
        elif value is not None and not (isinstance(value, dict) and (rest or "object" in value)):
            raise cannot  # a plain field; a sub-hash only as a step on the way (payments.data.payment.…)
        node[head] = value
        if rest and value is not None:
            self._expand(value, rest, path)

    # -- events ---------------------------------------------------------------------------
    def emit(
        self, type_: str, obj: dict[str, Any], *, account: str | None = None, previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Record an event (a snapshot of ``obj``) and queue it for the webhook sink."""
        data: dict[str, Any] = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = copy.deepcopy(previous)
        event = {"id": self.new_id("evt"), "object": "event"}
        if account:
            event["account"] = account  # a Connect event, sent to the Connect endpoint
        event.update(
            api_version=_ApiVersion.CURRENT,
            created=self.now(),
            data=data,
            livemode=False,
            pending_webhooks=1,
            request=dict(self.request),
            type=type_,
        )
        self.put("event", event)
        self.events.append(event)
        self.undelivered.append(event["id"])
        return event

    def update(self, obj: dict[str, Any], **changes: Any) -> dict[str, Any]:
        """Apply ``changes`` and return the previous values (for ``previous_attributes``)."""
        previous = {k: copy.deepcopy(obj.get(k)) for k, v in changes.items() if obj.get(k) != v}
        obj.update(changes)
        return previous


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
            balance_transaction=self.new_id("txn"),
            description=description,
        )
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
