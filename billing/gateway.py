"""The Stripe gateway: the only production module that calls Stripe.

Every call goes through ``stripe.StripeClient``'s ``client.v1.*`` async methods; every mutating
call carries a deterministic idempotency key derived from our own ids (so a retry, from our
outbox or from the SDK, can never charge, pay out or refund twice); Stripe's errors become domain
errors with stable codes. Webhook signatures are checked against each configured secret
(platform and Connect endpoints) with a 300-second tolerance.

With ``LODE_STRIPE_API_KEY`` set, this talks to Stripe (``LODE_STRIPE_API_BASE`` may point it at
a mock). The tests and ``lode demo`` hand it a client of ``stripe_simulator/simulator.py`` instead.

Calls are bounded in time. One try waits at most ``LODE_STRIPE_TIMEOUT_S`` (connecting at most
``CONNECT_TIMEOUT_S``) and the SDK tries ``LODE_STRIPE_MAX_RETRIES`` more times, with the same
idempotency key; the whole call, backoff included, is cut at ``budget_s`` whatever the HTTP client.
Stripe unavailable (unreachable, too slow, 5xx, rate-limited) is 503 ``payment_provider_unavailable``
with ``Retry-After``. Nothing may wait on Stripe while holding a database connection: every call
first checks that its task holds none (``catalog/db.py``), so callers follow billing/transfers.py —
a short transaction, the call with none open, a short transaction.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import stripe

from catalog.db import ensure_no_connection_held
from catalog.errors import DomainError, ServiceUnavailable, Unprocessable

log = logging.getLogger("lode.billing.gateway")
T = TypeVar("T")
TOLERANCE_S = 300
CONNECT_TIMEOUT_S = 3.0
RETRY_AFTER_S = 5  # what a client is told to wait when Stripe is unavailable


def call_budget_s(timeout_s: float, max_retries: int) -> float:
    """The longest one call may take: every try timing out, with the SDK's longest backoff between."""
    backoff = sum(min(stripe.HTTPClient.INITIAL_DELAY * 2**n, stripe.HTTPClient.MAX_DELAY) for n in range(max_retries))
    return timeout_s * (max_retries + 1) + backoff


class BadSignature(DomainError):
    status = 400
    code = "invalid_signature"


def configured(gateway: Gateway | None) -> Gateway:
    """The gateway, or 503 ``billing_not_configured`` when no Stripe key is set."""
    if gateway is None:
        raise ServiceUnavailable("Payments are not configured: set LODE_STRIPE_API_KEY.", code="billing_not_configured")
    return gateway


class Gateway:
    def __init__(
        self,
        client: stripe.StripeClient,
        webhook_secrets: tuple[str, ...],
        *,
        simulated: bool,
        budget_s: float = call_budget_s(10.0, 2),
    ) -> None:
        self.client = client
        self.webhook_secrets = webhook_secrets
        self.simulated = simulated
        self.budget_s = budget_s

    @classmethod
    def from_key(
        cls,
        api_key: str,
        webhook_secrets: tuple[str, ...],
        api_base: str = "",
        *,
        timeout_s: float = 10.0,
        max_retries: int = 2,
    ) -> Gateway:
        # The SDK's default client waits 80 s a try: one unreachable Stripe would hold a request
        # (and whatever it holds) for minutes.
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, CONNECT_TIMEOUT_S))
        options: dict[str, Any] = {"max_network_retries": max_retries, "http_client": stripe.HTTPXClient(timeout)}
        if api_base:
            options["base_addresses"] = {"api": api_base}
        client = stripe.StripeClient(api_key, **options)
        return cls(client, webhook_secrets, simulated=False, budget_s=call_budget_s(timeout_s, max_retries))

    async def _call(self, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        ensure_no_connection_held(f"Stripe ({what})")
        try:
            async with asyncio.timeout(self.budget_s):
                return await fn()
        except TimeoutError as exc:
            raise ServiceUnavailable(
                f"Stripe did not answer in time ({what}); retry shortly.",
                code="payment_provider_unavailable",
                retry_after=RETRY_AFTER_S,
            ) from exc
        except stripe.CardError as exc:
            raise Unprocessable(f"The payment was declined: {exc.user_message or exc}", code="card_declined") from exc
        except stripe.AuthenticationError as exc:
            raise ServiceUnavailable("Stripe refused Lode's credentials.", code="billing_not_configured") from exc
        except (stripe.RateLimitError, stripe.APIConnectionError) as exc:
            raise ServiceUnavailable(
                f"Stripe is unavailable ({what}); retry shortly.",
                code="payment_provider_unavailable",
                retry_after=RETRY_AFTER_S,
            ) from exc
        except stripe.InvalidRequestError as exc:
            log.error("stripe refused a request", extra={"what": what, "stripe_code": exc.code, "param": exc.param})
            raise DomainError(
                f"Stripe refused the request ({what}): {exc.user_message or exc}",
                code="payment_provider_rejected",
                status=502,
            ) from exc
        except stripe.StripeError as exc:  # 5xx, lock timeouts: safe to retry with the same key
            raise ServiceUnavailable(
                f"Stripe failed ({what}); retry shortly.",
                code="payment_provider_unavailable",
                retry_after=RETRY_AFTER_S,
            ) from exc

    @staticmethod
    def _plain(obj: Any) -> dict[str, Any]:
        return obj if isinstance(obj, dict) else obj.to_dict(for_json=True)

    # --- customers and accounts -------------------------------------------------------------

    async def create_customer(self, org_id: str, name: str) -> str:
        params = {"name": name, "metadata": {"lode_org_id": org_id}}
        customer = await self._call(
            "customer", lambda: self.client.v1.customers.create_async(params, {"idempotency_key": f"customer:{org_id}"})
        )  # type: ignore[arg-type]
        return customer.id

    async def create_account(self, org_id: str, country: str, email: str | None) -> str:
        params: dict[str, Any] = {
            "type": "express",
            "country": country,
            "metadata": {"lode_org_id": org_id},
            "capabilities": {"transfers": {"requested": True}},
        }
        if email:
            params["email"] = email
        account = await self._call(
            "account", lambda: self.client.v1.accounts.create_async(params, {"idempotency_key": f"account:{org_id}"})
        )  # type: ignore[arg-type]
        return account.id

    async def account_link(self, account_id: str, refresh_url: str, return_url: str) -> str:
        params = {
            "account": account_id,
            "refresh_url": refresh_url,
            "return_url": return_url,
            "type": "account_onboarding",
        }
        # Links live minutes: one per account and five-minute window, so a retried request gets the same.
        key = f"account_link:{account_id}:{int(time.time()) // 300}"
        link = await self._call(
            "account link", lambda: self.client.v1.account_links.create_async(params, {"idempotency_key": key})
        )  # type: ignore[arg-type]
        return link.url

    # --- paying -----------------------------------------------------------------------------

    async def create_checkout(self, params: dict[str, Any], key: str) -> dict[str, Any]:
        session = await self._call(
            "checkout", lambda: self.client.v1.checkout.sessions.create_async(params, {"idempotency_key": key})
        )  # type: ignore[arg-type]
        return self._plain(session)

    async def close_checkout(self, session_id: str) -> str:
        """Expire an open Checkout Session so it can no longer be paid; answers its final status.

        "expired" when it is closed (now or before); "complete" when the customer paid it first,
        whatever our own clock said — then the payment is on its way and must not be asked twice.
        """
        sessions = self.client.v1.checkout.sessions

        async def expire_or_read() -> str:
            try:
                closed = await sessions.expire_async(session_id, {}, {"idempotency_key": f"expire:{session_id}"})
                return str(closed.status)
            except stripe.InvalidRequestError:  # not open any more: what became of it?
                return str((await sessions.retrieve_async(session_id)).status)

        return await self._call("checkout", expire_or_read)

    async def send_invoice(
        self, customer: str, currency: str, amount: int, description: str, metadata: dict[str, str], key: str
    ) -> dict[str, Any]:
        """A one-off invoice sent by email: item, invoice, finalise, send — each step keyed."""
        invoice = await self._call(
            "invoice",
            lambda: self.client.v1.invoices.create_async(
                {
                    "customer": customer,
                    "collection_method": "send_invoice",
                    "days_until_due": 30,
                    "currency": currency,
                    "metadata": metadata,
                    "description": description,
                },
                {"idempotency_key": f"{key}:invoice"},
            ),
        )  # type: ignore[arg-type]
        await self._call(
            "invoice item",
            lambda: self.client.v1.invoice_items.create_async(
                {
                    "customer": customer,
                    "invoice": invoice.id,
                    "amount": amount,
                    "currency": currency,
                    "description": description,
                    "metadata": metadata,
                },
                {"idempotency_key": f"{key}:item"},
            ),
        )  # type: ignore[arg-type]
        await self._call(
            "invoice",
            lambda: self.client.v1.invoices.finalize_invoice_async(
                invoice.id, None, {"idempotency_key": f"{key}:finalize"}
            ),
        )
        sent = await self._call(
            "invoice",
            lambda: self.client.v1.invoices.send_invoice_async(invoice.id, None, {"idempotency_key": f"{key}:send"}),
        )
        return self._plain(sent)

    async def invoice_item(
        self, customer: str, currency: str, amount: int, description: str, metadata: dict[str, str], key: str
    ) -> str:
        item = await self._call(
            "invoice item",
            lambda: self.client.v1.invoice_items.create_async(
                {
                    "customer": customer,
                    "amount": amount,
                    "currency": currency,
                    "description": description,
                    "metadata": metadata,
                },
                {"idempotency_key": key},
            ),
        )  # type: ignore[arg-type]
        return item.id

    async def invoice_charge(self, invoice_id: str) -> tuple[str | None, str | None]:
        """(payment intent, charge) behind a paid invoice, found through ``invoice.payments``."""
        invoice = self._plain(
            await self._call(
                "invoice", lambda: self.client.v1.invoices.retrieve_async(invoice_id, {"expand": ["payments"]})
            )
        )  # type: ignore[arg-type]
        for item in (invoice.get("payments") or {}).get("data", []):
            payment = item.get("payment") or {}
            if payment.get("charge"):
                return payment.get("payment_intent"), payment["charge"]
            if payment.get("payment_intent"):
                return payment["payment_intent"], await self.intent_charge(payment["payment_intent"])
        return None, None

    async def intent_charge(self, payment_intent_id: str) -> str | None:
        intent = self._plain(
            await self._call("payment intent", lambda: self.client.v1.payment_intents.retrieve_async(payment_intent_id))
        )
        charge = intent.get("latest_charge")
        return charge.get("id") if isinstance(charge, dict) else charge

    async def charge_fee(self, charge_id: str) -> tuple[int, str] | None:
        """Stripe's processing fee on a charge and the currency it is in, or None while unknown."""
        charge = self._plain(
            await self._call(
                "charge",
                lambda: self.client.v1.charges.retrieve_async(charge_id, {"expand": ["balance_transaction"]}),
            )  # type: ignore[arg-type]
        )
        txn = charge.get("balance_transaction")
        if not isinstance(txn, dict) or txn.get("fee") is None:
            return None
        return int(txn["fee"]), str(txn["currency"]).upper()

    async def pause_subscription(self, subscription_id: str, paused: bool, key: str) -> None:
        params: dict[str, Any] = {"pause_collection": {"behavior": "void"} if paused else ""}
        await self._call(
            "subscription",
            lambda: self.client.v1.subscriptions.update_async(subscription_id, params, {"idempotency_key": key}),
        )  # type: ignore[arg-type]

    async def cancel_subscription(self, subscription_id: str, key: str) -> None:
        await self._call(
            "subscription",
            lambda: self.client.v1.subscriptions.cancel_async(subscription_id, None, {"idempotency_key": key}),
        )

    # --- money out --------------------------------------------------------------------------

    async def transfer(
        self,
        *,
        key: str,
        payment_id: str,
        org_id: str,
        amount: int,
        currency: str,
        destination: str,
        source_transaction: str | None,
    ) -> str:
        """One payout; ``key`` (``split:{payment}:{org}``, or with a suffix for a re-payment) is both
        the idempotency key and the metadata a later lookup finds it by."""
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "destination": destination,
            "transfer_group": payment_id,
            "metadata": {"lode_payment_id": payment_id, "lode_org_id": org_id, "lode_transfer_key": key},
        }
        if source_transaction:
            params["source_transaction"] = source_transaction
        made = await self._call(
            "transfer", lambda: self.client.v1.transfers.create_async(params, {"idempotency_key": key})
        )  # type: ignore[arg-type]
        return made.id

    async def transfers_in_group(self, transfer_group: str) -> list[dict[str, Any]]:
        found = await self._call(
            "transfers", lambda: self.client.v1.transfers.list_async({"transfer_group": transfer_group, "limit": 100})
        )  # type: ignore[arg-type]
        return [self._plain(t) for t in found.data]

    async def refund(self, charge_id: str, amount: int, refund_id: str, reason: str | None) -> str:
        params: dict[str, Any] = {"charge": charge_id, "amount": amount, "metadata": {"lode_refund_id": refund_id}}
        if reason in ("duplicate", "fraudulent", "requested_by_customer"):
            params["reason"] = reason
        made = await self._call(
            "refund", lambda: self.client.v1.refunds.create_async(params, {"idempotency_key": f"refund:{refund_id}"})
        )  # type: ignore[arg-type]
        return made.id

    async def reverse_transfer(self, transfer_id: str, amount: int, key: str) -> str:
        made = await self._call(
            "transfer reversal",
            lambda: self.client.v1.transfers.reversals.create_async(
                transfer_id, {"amount": amount}, {"idempotency_key": key}
            ),
        )  # type: ignore[arg-type]
        return made.id

    # --- metered billing --------------------------------------------------------------------

    async def meter(self, product_id: str, dimension: str) -> tuple[str, str]:
        event_name = f"lode_{product_id}_{dimension}".lower()
        params = {
            "display_name": f"{product_id} {dimension}",
            "event_name": event_name,
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
            "value_settings": {"event_payload_key": "value"},
        }
        meter = await self._call(
            "meter",
            lambda: self.client.v1.billing.meters.create_async(
                params, {"idempotency_key": f"meter:{product_id}:{dimension}"}
            ),
        )  # type: ignore[arg-type]
        return meter.id, event_name

    async def metered_price(
        self, plan_id: str, dimension: str, currency: str, unit_amount: int, interval: str, meter_id: str, name: str
    ) -> str:
        params = {
            "currency": currency,
            "unit_amount": unit_amount,
            "product_data": {"name": name},
            "recurring": {"interval": interval, "usage_type": "metered", "meter": meter_id},
            "metadata": {"lode_plan_id": plan_id, "lode_dimension": dimension},
        }
        price = await self._call(
            "price",
            lambda: self.client.v1.prices.create_async(params, {"idempotency_key": f"price:{plan_id}:{dimension}"}),
        )  # type: ignore[arg-type]
        return price.id

    async def meter_event(self, event_name: str, customer: str, value: int, identifier: str, timestamp: int) -> None:
        params = {
            "event_name": event_name,
            "identifier": identifier,
            "timestamp": timestamp,
            "payload": {"stripe_customer_id": customer, "value": str(value)},
        }

        async def create() -> None:
            try:
                await self.client.v1.billing.meter_events.create_async(
                    params, {"idempotency_key": f"meter_event:{identifier}"}
                )  # type: ignore[arg-type]
            except stripe.InvalidRequestError as exc:
                if exc.code != "resource_already_exists":  # Stripe already has this identifier: recorded
                    raise

        await self._call("meter event", create)

    # --- webhooks ---------------------------------------------------------------------------

    def verify(self, payload: bytes, signature: str | None) -> dict[str, Any]:
        """The event, if the signature is valid and fresh under one of the configured secrets."""
        if not signature:
            raise BadSignature("The Stripe-Signature header is missing.")
        text = payload.decode("utf-8", errors="replace")
        for secret in self.webhook_secrets:
            try:
                stripe.WebhookSignature.verify_header(text, signature, secret, TOLERANCE_S)
            except stripe.SignatureVerificationError:
                continue
            try:
                event = json.loads(text)
            except ValueError:
                raise BadSignature("The payload is not JSON.") from None
            if not isinstance(event, dict) or not str(event.get("id", "")).startswith("evt_"):
                raise BadSignature("The payload is not a Stripe event.")
            return event
        raise BadSignature("The signature does not match, or is older than 300 seconds.")
