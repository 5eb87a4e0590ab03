"""The in-process Stripe stand-in used by the tests, by ``lode demo`` and by a development server
with no Stripe key (see ``billing/simulated.py``).

``StripeSimulator`` is a stateful Litestar app answering the part of Stripe's REST API that
Lode uses, reached by the *real* SDK: ``sim.client()`` is a ``stripe.StripeClient`` whose
``http_client`` sends each request through ``httpx.ASGITransport`` to ``sim.app`` (the sync
methods go through a private event loop thread). So the production gateway runs unchanged, and
every request is checked on the way in against the SDK's own parameter TypedDicts (``params.py``).

Modules: this one is the facade (wiring, inspection, webhooks, and the helpers that act for a
paying customer, a bank or Stripe itself); ``wire`` the wire (route table, request
pipeline, Litestar app, ``stripe.HTTPClient``); ``objects`` the objects and ``state`` the money
movements on them; ``persistence`` the lock around them and the file that can keep them;
``selling`` (selling), ``invoicing`` (invoices, subscriptions) and
``payouts`` (Connect, transfers, refunds) the endpoint handlers; ``hosted`` the Checkout page a
buyer pays on.

What it does like Stripe: ids with Stripe's prefixes, objects shaped from Stripe's sample
fixtures, list pagination, ``expand[]``, idempotency keys (replayed byte for byte with
``Idempotent-Replayed: true``; same key, other params → ``idempotency_error``), Stripe-shaped
errors, and webhook events signed with ``stripe.WebhookSignature.generate_signature_header``
(Connect events, which carry ``account``, with ``connect_webhook_secret`` when one is given).

Simplified on purpose:
* Events caused by API calls (``charge.refunded``, ``customer.subscription.deleted`` …) are
  queued and sent to ``webhook_sink`` by ``await sim.deliver_pending()`` — or, with
  ``deliver_automatically``, by a task started once the call is answered — never inside the
  API call: the caller may hold a database transaction that the webhook handler needs.
  The customer-side helpers (``complete_checkout`` …) deliver everything queued before returning.
  An event the sink fails on stays queued (at the head) for the next delivery; nothing retries
  on a timer.
* One namespace for all objects: ``Stripe-Account`` is logged and scopes idempotency keys only.
* No balances: a transfer without ``source_transaction`` never fails for lack of funds.
* ``fail_next`` failures of kind ``lock_timeout``/``rate_limit``/``server_error`` happen
  before the request runs and are not stored under the idempotency key (real Stripe does
  store a 500); ``card_declined`` is stored; ``connection_reset`` lets the request run and
  store its result, then drops the response, so a retry with the same key replays it.
* No /v2 endpoints; v2 is not used by Lode.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import stripe

from stripe_simulator import invoicing, payouts, selling  # noqa: F401 - register the REST handlers with the route table
from stripe_simulator.objects import SimulatedStripeError, list_object
from stripe_simulator.persistence import StateFile, StateLock
from stripe_simulator.state import BillingState
from stripe_simulator.wire import FAILURES, Failure, SimulatedRequest, SimulatorHTTPClient, Wire

__all__ = ["SimulatedRequest", "SimulatedStripeError", "SimulatorHTTPClient", "StripeSimulator"]

WebhookSink = Callable[[bytes, dict[str, str]], Awaitable[None]]
log = logging.getLogger("stripe_simulator")


class StripeSimulator:
    """Stripe, simulated. See the module docstring for what is and is not simulated.

    ``state_file`` keeps the state in that file, shared with every process given the same file
    (see ``persistence.py``); without one it lives and dies with this object. ``checkout_page``
    is the base of the Checkout Sessions' ``url`` (a page serving ``hosted.py``'s routes; by
    default Stripe's own, which nobody can pay at). ``deliver_automatically`` sends the events an
    API call queued to ``webhook_sink`` soon after the call is answered, as Stripe does, rather
    than waiting for ``deliver_pending``.
    """

    def __init__(
        self,
        webhook_secret: str = "whsec_simulated",
        webhook_sink: WebhookSink | None = None,
        *,
        connect_webhook_secret: str | None = None,
        seed: int | None = None,
        state_file: str | Path | None = None,
        checkout_page: str | None = None,
        deliver_automatically: bool = False,
    ) -> None:
        self.webhook_secret = webhook_secret
        self.connect_webhook_secret = connect_webhook_secret
        self.webhook_sink = webhook_sink
        self.state = BillingState(seed=seed)
        if checkout_page:
            self.state.checkout_page = checkout_page.rstrip("/")
        # Guards the state against the sync path (another thread) and, with a file, against other
        # processes; never held across an await.
        self._lock = StateLock()
        self._wire = Wire(self.state, self._lock)
        if state_file:
            self._lock.file = StateFile(Path(state_file), self.state, self._wire.idempotent)
        self.deliver_automatically = deliver_automatically
        self._wire.after_request = self._deliver_soon
        self._deliveries: set[asyncio.Task[None]] = set()
        self.app = self._wire.app  # the ASGI app; also servable with uvicorn at LODE_STRIPE_API_BASE
        self.requests = self._wire.requests
        self._http_client = SimulatorHTTPClient(self.app)

    # -- wiring --------------------------------------------------------------------------
    def http_client(self) -> SimulatorHTTPClient:
        return self._http_client

    def client(
        self, api_key: str = "sk_test_simulated", *, max_network_retries: int = 0, **kwargs: Any
    ) -> stripe.StripeClient:
        """A real ``StripeClient`` talking to this simulator.

        ``max_network_retries`` is set explicitly, 0 by default, so that tests see injected
        failures; pass 2 to exercise the SDK's own retries (which reuse the idempotency key).
        """
        return stripe.StripeClient(
            api_key, http_client=self._http_client, max_network_retries=max_network_retries, **kwargs
        )

    def close(self) -> None:
        self._http_client.close()
        self._lock.close()

    def fail_next(self, method: str, path_prefix: str, kind: str, times: int = 1) -> None:
        """Make the next ``times`` requests whose method matches and whose path starts with
        ``path_prefix`` fail with ``kind``: card_declined, lock_timeout, rate_limit, server_error
        or connection_reset (see the module docstring for which are stored under the key)."""
        if kind not in FAILURES:
            raise ValueError(f"unknown failure kind {kind!r}; one of {sorted(FAILURES)}")
        with self._lock:
            self._wire.failures.append(Failure(method, path_prefix, kind, times))

    def advance_clock(self, seconds: int) -> None:
        """Move the simulator's clock (e.g. past the 24 h meter-event identifier window)."""
        with self._lock:
            self.state.clock_offset += seconds

    def adopt(self, kind: str, id_: str, **fields: Any) -> bool:
        """Make a ``customer`` or ``account`` under an id a database kept from a simulator whose
        state is gone (before there was a state file); answers whether it was missing. The object
        has ``fields`` and its sample's defaults, as if it had been made here."""
        if kind not in ("customer", "account"):
            raise ValueError(f"only customers and accounts are adopted, not {kind!r}")
        with self._lock:
            if self.state.find(id_) is not None:
                return False
            made = self.state.make(kind, id=id_, **fields)
            if kind == "account":
                made["external_accounts"] = list_object([], f"/v1/accounts/{id_}/external_accounts")
            return True

    # -- inspection ----------------------------------------------------------------------
    def objects(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self.state.objects(kind))

    def get(self, kind: str, id_: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.state.get(kind, id_))

    def checkout_session(self, session_id: str) -> dict[str, Any]:
        """A Checkout Session with its ``line_items`` (what Stripe's hosted page shows)."""
        with self._lock:
            return self.state.render(self.state.get("checkout.session", session_id), ["line_items"])

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return self.state.events

    def meter_usage(self, event_name: str, customer: str | None = None) -> Decimal:
        """Sum of the values of the stored meter events (the meter's payload keys)."""
        with self._lock:
            meter = next(m for m in self.state.objects("billing.meter") if m["event_name"] == event_name)
            who = meter["customer_mapping"]["event_payload_key"]
            value = meter["value_settings"]["event_payload_key"]
            return sum(
                (
                    Decimal(e["payload"][value])
                    for e in self.state.objects("billing.meter_event")
                    if e["event_name"] == event_name and customer in (None, e["payload"][who])
                ),
                Decimal(0),
            )

    # -- webhooks ------------------------------------------------------------------------
    def sign(self, payload: bytes | str, timestamp: int | None = None, secret: str | None = None) -> str:
        """A ``Stripe-Signature`` header value for ``payload`` (for crafting stale/tampered ones)."""
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        return stripe.WebhookSignature.generate_signature_header(
            payload=text, secret=secret or self.webhook_secret, timestamp=timestamp
        )

    async def deliver_pending(self) -> None:
        """Send every queued event to ``webhook_sink``, oldest first; with no sink they stay queued.

        An event the sink fails on goes back to the head of the queue (Stripe retries), and the
        failure is raised.
        """
        while self.webhook_sink is not None:
            with self._lock:
                if not self.state.undelivered:
                    return
                event_id = self.state.undelivered.pop(0)
            try:
                await self.redeliver(event_id)
            except BaseException:
                with self._lock:
                    self.state.undelivered.insert(0, event_id)
                raise

    def _deliver_soon(self) -> None:
        """After an API call: its events go out once the caller has its answer (not inside the call)."""
        if not self.deliver_automatically or self.webhook_sink is None or not self.state.undelivered:
            return
        task = asyncio.get_running_loop().create_task(self._deliver_in_background())
        self._deliveries.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._deliveries.discard)

    async def _deliver_in_background(self) -> None:
        try:
            await self.deliver_pending()
        except Exception:  # queued again; the next call or page retries, as Stripe would
            log.warning("a simulated webhook was not accepted; it stays queued", exc_info=True)

    async def redeliver(self, event_id: str) -> None:
        """Send an event (again): the same bytes, freshly signed."""
        if self.webhook_sink is None:
            return
        with self._lock:
            event = self.state.get("event", event_id)
            # Stripe sends pretty-printed JSON: the same event renders to the same bytes every time.
            payload = json.dumps(event, indent=2, ensure_ascii=False).encode()
        # Connect events go to the Connect endpoint, which has its own secret when one is given.
        secret = self.connect_webhook_secret if event.get("account") else None
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": self.sign(payload, secret=secret),
        }
        await self.webhook_sink(payload, headers)

    # -- what a paying customer, a bank or Stripe itself would do ------------------------
    async def complete_checkout(
        self, session_id: str, *, async_payment: bool = False, clears: bool | None = True
    ) -> dict[str, Any]:
        """The customer pays an open Checkout Session (with a bank debit if ``async_payment``:
        completed first with payment_status "unpaid", then — ``clears`` True — settled, or — False —
        failed; None leaves the debit processing for ``clear_async_payment``)."""
        s = self.state
        with self._lock:
            session = s.get("checkout.session", session_id)
            if session["status"] != "open":
                raise SimulatedStripeError(400, f"Checkout Session {session_id} is {session['status']}.")
            extra = s.private[session_id]
            if session["mode"] == "payment":
                data = extra["payment_intent_data"]
                intent, _ = s.pay(
                    customer=session["customer"],
                    amount=session["amount_total"],
                    currency=session["currency"],
                    pending=async_payment,
                    metadata=data.get("metadata"),
                    transfer_group=data.get("transfer_group"),
                    description=data.get("description"),
                )
                session["payment_intent"] = intent["id"]
            else:
                # Subscription mode always has a customer: Stripe creates one when none was given.
                customer = (
                    session["customer"]
                    or s.make("customer", email=session["customer_email"], invoice_prefix=s.token(8).upper())["id"]
                )
                metadata = extra["subscription_data"].get("metadata") or {}
                sub, invoice = s.start_subscription(customer, extra["lines"], metadata=metadata, pending=async_payment)
                session.update(customer=customer, subscription=sub["id"], invoice=invoice["id"])
            paid = "paid" if session["amount_total"] else "no_payment_required"
            buyer = s.find(session["customer"] or "") or {}
            details = {
                "email": session["customer_email"] or buyer.get("email"),
                "name": buyer.get("name"),
                "phone": None,
                "address": None,
                "tax_exempt": "none",
                "tax_ids": [],
            }
            session.update(
                status="complete",
                url=None,
                payment_status="unpaid" if async_payment else paid,
                customer_details=details,
            )
            s.emit("checkout.session.completed", session)
        await self.deliver_pending()
        if async_payment and clears is not None:
            return await self.clear_async_payment(session_id, succeeded=clears)
        return self.get("checkout.session", session_id)

    async def clear_async_payment(self, session_id: str, *, succeeded: bool = True) -> dict[str, Any]:
        """The bank debit behind a completed, still unpaid Checkout Session succeeds or fails."""
        s = self.state
        with self._lock:
            session = s.get("checkout.session", session_id)
            if session["status"] != "complete" or session["payment_status"] != "unpaid":
                raise SimulatedStripeError(400, f"Checkout Session {session_id} has no payment processing.")
            intent = s.find(session["payment_intent"] or "")
            if intent is None and session["invoice"]:
                invoice_payments = [p for p in s.objects("invoice_payment") if p["invoice"] == session["invoice"]]
                intent = invoice_payments and s.get("payment_intent", invoice_payments[0]["payment"]["payment_intent"])
            if succeeded:
                if intent:
                    s.settle(intent)  # pays the invoice too, which makes the subscription active
                session["payment_status"] = "paid"
                s.emit("checkout.session.async_payment_succeeded", session)
            else:
                if intent:
                    intent.update(status="requires_payment_method")
                s.emit("checkout.session.async_payment_failed", session)
        await self.deliver_pending()
        return self.get("checkout.session", session_id)

    async def pay_invoice(self, invoice_id: str) -> dict[str, Any]:
        """The customer pays an open invoice (emits invoice.paid)."""
        with self._lock:
            invoice = self.state.get("invoice", invoice_id)
            self.state.pay_invoice(invoice)
        await self.deliver_pending()
        return self.get("invoice", invoice_id)

    async def fail_invoice(self, invoice_id: str) -> dict[str, Any]:
        """A collection attempt fails (emits invoice.payment_failed; the subscription goes past_due)."""
        s = self.state
        with self._lock:
            invoice = s.get("invoice", invoice_id)
            if invoice["status"] != "open":
                raise SimulatedStripeError(400, f"Invoice {invoice_id} is {invoice['status']}, not open.")
            s.update(
                invoice,
                attempted=True,
                attempt_count=invoice["attempt_count"] + 1,
                next_payment_attempt=s.now() + 3 * 86400,
            )
            s.emit("invoice.payment_failed", invoice)
            if (sub := s.subscription_of(invoice)) and sub["status"] == "active":
                s.emit("customer.subscription.updated", sub, previous=s.update(sub, status="past_due"))
        await self.deliver_pending()
        return self.get("invoice", invoice_id)

    async def create_dispute(self, charge_id: str, amount: int | None = None) -> dict[str, Any]:
        """The cardholder disputes a charge (emits charge.dispute.created)."""
        s = self.state
        with self._lock:
            charge = s.get("charge", charge_id)
            amount = charge["amount"] if amount is None else amount
            if not 0 < amount <= charge["amount"]:
                raise SimulatedStripeError(400, f"A dispute of {amount} does not fit charge {charge_id}.")
            dispute = s.make(
                "dispute",
                amount=amount,
                charge=charge_id,
                currency=charge["currency"],
                payment_intent=charge["payment_intent"],
                status="needs_response",
                reason="fraudulent",
                is_charge_refundable=False,
                metadata={},
                evidence_details={
                    "due_by": s.now() + 7 * 86400,
                    "has_evidence": False,
                    "past_due": False,
                    "submission_count": 0,
                    "enhanced_eligibility": {},
                },
            )
            charge["disputed"] = True
            s.emit("charge.dispute.created", dispute)
        await self.deliver_pending()
        return self.get("dispute", dispute["id"])

    async def close_dispute(self, dispute_id: str, status: str = "lost") -> dict[str, Any]:
        """The network decides a dispute (emits charge.dispute.closed)."""
        if status not in ("won", "lost"):
            raise ValueError("a dispute closes as 'won' or 'lost'")
        with self._lock:
            dispute = self.state.get("dispute", dispute_id)
            if dispute["status"] in ("won", "lost"):
                raise SimulatedStripeError(400, f"Dispute {dispute_id} is already {dispute['status']}.")
            previous = self.state.update(dispute, status=status)
            self.state.emit("charge.dispute.closed", dispute, previous=previous)
        await self.deliver_pending()
        return self.get("dispute", dispute["id"])

    async def activate_account(self, account_id: str) -> dict[str, Any]:
        """The provider finishes Connect onboarding (emits account.updated as a Connect event)."""
        with self._lock:
            account = self.state.get("account", account_id)
            capabilities = dict.fromkeys(account["capabilities"], "active") | {"transfers": "active"}
            requirements = {
                **account.get("requirements", {}),
                "currently_due": [],
                "eventually_due": [],
                "past_due": [],
                "disabled_reason": None,
            }
            previous = self.state.update(
                account,
                capabilities=capabilities,
                requirements=requirements,
                charges_enabled=True,
                payouts_enabled=True,
                details_submitted=True,
            )
            self.state.emit("account.updated", account, account=account_id, previous=previous)
        await self.deliver_pending()
        return self.get("account", account_id)
