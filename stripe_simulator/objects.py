"""The simulator's in-memory Stripe state: objects, ids, lists, expansion and events.

Every object starts as a deep copy of Stripe's own sample of that type, with the sample's
incidental values (discounts, shipping costs, foreign ids) reset, and then the fields the request
set. So responses carry the full set of fields a real response has, and the SDK hydrates them like
real ones. The samples ship inside this package (``samples/``, see ``SAMPLES``); without them the
simulator refuses to start rather than answer with objects missing most of their fields.

Only the simulator uses this module; it is not a Stripe client. ``state.py`` adds the
money movements on top; see ``stripe_simulator/simulator.py``.
"""

from __future__ import annotations

import copy
import functools
import json
import random
import string
import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import stripe

# Stripe's sample object of each type the simulator makes: ``resources[type]`` of
# ``openapi/fixtures3.json`` in the public stripe/openapi repository (MIT, ``samples/LICENSE``).
# Making a new type of object? Copy its sample in from there, under the same key.
SAMPLES = "samples/stripe-objects.json"


class MissingSamples(RuntimeError):
    """The package's Stripe samples are missing or lack a type: an installation, not a request, is broken."""


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
    "balance_transaction": "txn",
    "refund": "re",
    "dispute": "du",
    "account": "acct",
    "event": "evt",
    "line_item": "il",
    "subscription_item": "si",
    "item": "li",
}


@functools.cache
def load_samples() -> Mapping[str, Any]:
    """Stripe's sample objects by type, checked to hold every type the simulator makes."""
    file = resources.files(__package__).joinpath(SAMPLES)
    try:
        samples = json.loads(file.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise MissingSamples(
            f"The Stripe simulator cannot read its sample objects ({file}): {exc}. They ship inside the "
            "stripe_simulator package; restore the file from the repository or reinstall Lode."
        ) from exc
    if lacking := sorted(set(_PREFIXES) - {"event"} - set(samples)):  # events are built, not sampled
        raise MissingSamples(f"{file} has no Stripe sample for {', '.join(lacking)}.")
    return samples


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

    def __init__(self, *, seed: int | None = None) -> None:
        self.samples = load_samples()
        self.rng = random.Random(seed)
        # Where a Checkout Session's ``url`` points: Stripe's hosted page, or one serving the simulator's.
        self.checkout_page = "https://checkout.stripe.com/c/pay"
        self.clock_offset = 0
        self._by_id: dict[str, dict[str, Any]] = {}
        self._kinds: dict[str, dict[str, dict[str, Any]]] = {}
        self._seq: dict[str, int] = {}
        self.touched: set[tuple[str, str]] = set()  # (kind, key) of objects a request may have changed
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
        obj = copy.deepcopy(self.samples[kind])
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
        self.touched.add((kind, key))

    # -- lookup -------------------------------------------------------------------------
    def get(self, kind: str, id_: str, param: str | None = None) -> dict[str, Any]:
        obj = self._kinds.get(kind, {}).get(id_)
        if obj is None:
            raise missing(kind, id_, param)
        self.touched.add((kind, id_))
        return obj

    def find(self, id_: str) -> dict[str, Any] | None:
        obj = self._by_id.get(id_)
        if obj is not None:
            self.touched.add((obj["object"], id_))
        return obj

    def by_key(self, kind: str) -> dict[str, dict[str, Any]]:
        """The objects of ``kind`` by key, to read: change one only through ``put``."""
        return self._kinds.get(kind, {})

    # -- persistence (see persistence.py) -------------------------------------------------
    # A request reaches every object it could change through get, find, objects or put, which
    # note it in ``touched``; the state file writes those of them whose JSON did change.
    def record(self, kind: str, key: str) -> tuple[int, dict[str, Any], dict[str, Any] | None] | None:
        """(order, object, what Stripe keeps private about it), or None if it is gone (rolled back)."""
        obj = self._kinds.get(kind, {}).get(key)
        return None if obj is None else (self._seq[key], obj, self.private.get(key))

    def load(self, kind: str, key: str, seq: int, obj: dict[str, Any], private: dict[str, Any] | None) -> None:
        """Take in an object another process saved; ``order_events`` once all are in."""
        if "id" in obj:
            self._by_id[obj["id"]] = obj
        self._kinds.setdefault(kind, {})[key] = obj
        self._seq[key] = seq
        if private is not None:
            self.private[key] = private

    def order_events(self) -> None:
        self.events = sorted(self._kinds.get("event", {}).values(), key=lambda e: self._seq[e["id"]])

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
        found = self._kinds.get(kind, {})
        self.touched.update((kind, key) for key in found)
        return list(found.values())

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
            api_version=stripe.api_version,
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
