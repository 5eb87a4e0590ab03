"""The two requests that wait on Stripe: paying for a licence, and a provider's payout-account link.

Neither uses the request's transaction (STYLE rule 3's exception, like delivery's reserve → work →
settle; ``billing/transfers.py`` is the model): a short transaction decides what Lode will ask
Stripe and records it, Stripe is called with no transaction open and no connection checked out,
and a short transaction records the answer. A slow or unreachable Stripe then delays only its own
request: it holds no licence lock, no SQLite write lock and no pooled connection meanwhile.

A checkout, phase by phase:

1. *Prepare* (the licence locked). The checks; then the licence's checkout that may still be paid
   is answered as it is — or, when there is none, a ``pending`` checkout (and its pending payment)
   is recorded with the Stripe request it will make (``Checkout.params``). A pending checkout found
   here (another request is preparing it, or an earlier attempt failed or died before Stripe's
   answer was recorded) is resumed, never duplicated. An open session our clock says has expired
   is closed at Stripe first (no transaction open), then this phase runs again: a session paid in
   its last moments is never replaced.
2. *Ask Stripe*. The customer (key ``customer:{org}``), a metered plan's meters and prices, then
   the Checkout Session (``checkout:{checkout}``) or the sent invoice (``invoice:{payment}:…``).
   Every key derives from our ids and every request from what phase 1 recorded, so any attempt —
   concurrent, or a retry after a timeout or a crash — gets the same Stripe objects.
3. *Record* (the checkout locked). Stripe's answer on the pending checkout, once; an attempt that
   finds it recorded by another simply reads it.

Stripe unavailable (503, ``Retry-After``) leaves the checkout pending for the retry. Stripe refusing
(502) marks it ``failed``, so the next checkout starts afresh with a request built anew.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing import meters, money, webhooks
from billing import repository as repo
from billing.gateway import Gateway, configured
from billing.models import Checkout, Payment
from billing.schemas import CheckoutCreate, CheckoutRead, PayoutAccountRead
from catalog.access import repository as access_repo
from catalog.access.models import Licence
from catalog.auth import Principal, ensure_member_with, ensure_org_admin
from catalog.db import read_transaction, utcnow, write_transaction
from catalog.errors import Conflict, DomainError, NotFound, ServiceUnavailable, ValidationFailed
from catalog.ids import new_id
from catalog.orgs import repository as orgs_repo
from catalog.products import repository as products_repo
from catalog.products.models import Plan, Product
from catalog.settings import Settings

PRICED = ("one_time", "subscription", "metered")
PROCESSING = (
    "A payment for this licence is being processed; its outcome will activate the licence or free a new checkout."
)


@dataclass(frozen=True, slots=True)
class _Close:
    """Phase 1's answer when an open session ran out by our clock: close it at Stripe, then retry."""

    session_id: str


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What phase 2 asks Stripe for, read from the pending checkout in phase 1."""

    checkout_id: str
    payment_id: str
    method: str
    params: dict[str, Any]
    org_id: str
    org_name: str
    customer: str | None  # None: made at Stripe in phase 2, kept in phase 3
    plan_id: str
    product_id: str
    currency: str
    interval: str
    name: str
    metered: tuple[tuple[str, int], ...]  # (dimension, unit price with tax) of a metered plan


@dataclass(frozen=True, slots=True)
class _Made:
    customer: str
    url: str
    session_id: str | None = None
    expires_at: datetime | None = None
    invoice_id: str | None = None


class CheckoutService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        caller: Principal,
        gateway: Gateway | None,
        settings: Settings,
    ) -> None:
        self.sessions = sessions
        self.caller = caller
        self.gateway = gateway
        self.settings = settings

    def _stripe(self) -> Gateway:
        return configured(self.gateway)

    # --- paying -----------------------------------------------------------------------------

    async def checkout(self, licence_id: str, data: CheckoutCreate) -> CheckoutRead:
        closed: dict[str, str] = {}  # sessions closed at Stripe by this request → their final status
        while True:
            async with write_transaction(self.sessions) as session:
                step = await self._prepare(session, licence_id, data, closed)
            if not isinstance(step, _Close):
                break
            closed[step.session_id] = await self._stripe().close_checkout(step.session_id)
        if isinstance(step, CheckoutRead):
            return step
        try:
            made = await self._ask_stripe(step)
        except ServiceUnavailable:
            raise  # still pending: the retry sends the same requests under the same keys
        except DomainError:
            async with write_transaction(self.sessions) as session:
                await self._refused(session, step.checkout_id)
            raise
        async with write_transaction(self.sessions) as session:
            return await self._record(session, step, made)

    async def _prepare(
        self, session: AsyncSession, licence_id: str, data: CheckoutCreate, closed: dict[str, str]
    ) -> CheckoutRead | _Close | _Prepared:
        licence = await access_repo.party_licence(session, self.caller, licence_id, lock=True)
        ensure_member_with(self.caller, licence.consumer_org_id, "buyer")
        plan = await products_repo.plan(session, licence.plan_id)
        product = await products_repo.get(session, licence.product_id)
        assert plan is not None and product is not None
        if plan.kind not in PRICED:
            raise Conflict("This licence's plan costs nothing.", code="nothing_to_pay")
        if licence.status != "pending_payment":
            raise Conflict(
                f"The licence is {licence.status}; only a licence awaiting payment is paid for.",
                code="invalid_transition",
            )
        if data.method == "invoice" and plan.kind != "one_time":
            raise ValidationFailed.field("method", "invoices are sent for one-time plans; pay subscriptions by card")
        self._stripe()
        existing = await repo.open_checkout(session, licence.id)
        if existing is not None:
            if existing.status == "processing":
                raise Conflict(PROCESSING, code="payment_processing")
            if existing.status == "pending":
                return await self._prepared(session, existing, licence, plan, product)
            if existing.expires_at is None or existing.expires_at > utcnow():
                return await self._read(session, existing)
            # Its time ran out before Stripe's event said so.
            if existing.session_id and existing.session_id not in closed:
                return _Close(existing.session_id)
            if closed.get(existing.session_id or "") == "complete":
                raise Conflict(PROCESSING, code="payment_processing")
            await webhooks.expire_checkout(session, existing)
        checkout = await self._new(session, licence, plan, product, data)
        return await self._prepared(session, checkout, licence, plan, product)

    async def _new(
        self, session: AsyncSession, licence: Licence, plan: Plan, product: Product, data: CheckoutCreate
    ) -> Checkout:
        tax = money.tax_on(plan.amount, plan.tax_bps)
        source = "invoice" if data.method == "invoice" else "checkout"
        payment = webhooks.new_payment(
            licence, source=source, invoice_id=None, currency=plan.currency, amount=plan.amount + tax, tax=tax
        )
        metadata = {"lode_licence_id": licence.id, "lode_payment_id": payment.id}
        name = _name(product, plan)
        if data.method == "invoice":
            mode = "invoice"
            params = {
                "currency": plan.currency.lower(),
                "amount": payment.amount,
                "description": name,
                "metadata": metadata,
            }
        else:
            params = self._session_params(licence, plan, name, payment, data, metadata)
            mode = params["mode"]
        checkout = Checkout(
            id=new_id("chk"),
            licence_id=licence.id,
            payment_id=payment.id,
            method=data.method,
            mode=mode,
            url="",
            status="pending",
            params=params,
            created_at=utcnow(),
        )
        if mode != "subscription":  # subscriptions are paid by their invoices, each its own payment
            session.add(payment)
        session.add(checkout)
        await session.flush()
        return checkout

    def _session_params(
        self,
        licence: Licence,
        plan: Plan,
        name: str,
        payment: Payment,
        data: CheckoutCreate,
        metadata: dict[str, str],
    ) -> dict[str, Any]:
        """The Checkout Session's parameters but the customer and a metered plan's prices."""
        base = f"{self.settings.public_url}/v1/licences/{licence.id}"
        params: dict[str, Any] = {
            "client_reference_id": licence.id,
            "metadata": metadata,
            "success_url": data.success_url or f"{base}?checkout=success",
            "cancel_url": data.cancel_url or f"{base}?checkout=cancelled",
        }
        currency = plan.currency.lower()
        if plan.kind == "one_time":
            params["mode"] = "payment"
            params["line_items"] = [
                {
                    "quantity": 1,
                    "price_data": {"currency": currency, "unit_amount": payment.amount, "product_data": {"name": name}},
                }
            ]
            params["payment_intent_data"] = {"transfer_group": payment.id, "metadata": metadata}
            return params
        params["mode"] = "subscription"
        params["subscription_data"] = {"metadata": {"lode_licence_id": licence.id}}
        params["line_items"] = []
        if plan.amount:
            params["line_items"].append(
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": currency,
                        "unit_amount": money.with_tax(plan.amount, plan.tax_bps),
                        "recurring": {"interval": plan.interval or "month"},
                        "product_data": {"name": name},
                    },
                }
            )
        return params

    async def _prepared(
        self, session: AsyncSession, checkout: Checkout, licence: Licence, plan: Plan, product: Product
    ) -> _Prepared:
        customer = await repo.customer_id(session, licence.consumer_org_id)
        org = await orgs_repo.get_org(session, licence.consumer_org_id)
        assert org is not None and checkout.params is not None
        metered = ()
        if checkout.mode == "subscription":
            metered = tuple(
                (dimension, money.with_tax(int(price), plan.tax_bps))
                for dimension, price in sorted(plan.unit_prices.items())
            )
        return _Prepared(
            checkout_id=checkout.id,
            payment_id=checkout.payment_id,
            method=checkout.method,
            params=checkout.params,
            org_id=org.id,
            org_name=org.name,
            customer=customer,
            plan_id=plan.id,
            product_id=product.id,
            currency=plan.currency.lower(),
            interval=plan.interval or "month",
            name=_name(product, plan),
            metered=metered,
        )

    async def _ask_stripe(self, step: _Prepared) -> _Made:
        gateway = self._stripe()
        customer = step.customer or await gateway.create_customer(step.org_id, step.org_name)
        if step.method == "invoice":
            p = step.params
            invoice = await gateway.send_invoice(
                customer,
                p["currency"],
                p["amount"],
                p["description"],
                _ordered(p["metadata"]),
                key=f"invoice:{step.payment_id}",
            )
            url = invoice.get("hosted_invoice_url") or f"https://invoice.stripe.com/i/{invoice['id']}"
            return _Made(customer=customer, url=url, invoice_id=invoice["id"])
        prices = []
        for dimension, unit_amount in step.metered:
            meter_id, _ = await meters.meter_for(self.sessions, gateway, step.product_id, dimension)
            price = await gateway.metered_price(
                step.plan_id,
                dimension,
                step.currency,
                unit_amount,
                step.interval,
                meter_id,
                f"{step.name} ({dimension})",
            )
            prices.append({"price": price})
        params = {**step.params, "customer": customer, "line_items": [*step.params["line_items"], *prices]}
        made = await gateway.create_checkout(_ordered(params), key=f"checkout:{step.checkout_id}")
        expires_at = datetime.fromtimestamp(made["expires_at"], UTC) if made.get("expires_at") else None
        return _Made(customer=customer, url=made["url"], session_id=made["id"], expires_at=expires_at)

    async def _record(self, session: AsyncSession, step: _Prepared, made: _Made) -> CheckoutRead:
        if step.customer is None:
            await repo.add_customer(session, step.org_id, made.customer)
        checkout = await repo.checkout(session, step.checkout_id)
        assert checkout is not None
        if checkout.status == "pending":
            checkout.status, checkout.url, checkout.expires_at = "open", made.url, made.expires_at
            checkout.session_id, checkout.invoice_id = made.session_id, made.invoice_id
            if made.invoice_id is not None:
                payment = await repo.payment(session, checkout.payment_id, lock=True)
                # invoice.paid may have named it first: the invoice was emailed before this phase.
                if payment is not None and payment.invoice_id is None:
                    payment.invoice_id = made.invoice_id
            await session.flush()
        return await self._read(session, checkout)

    async def _refused(self, session: AsyncSession, checkout_id: str) -> None:
        checkout = await repo.checkout(session, checkout_id)
        if checkout is not None and checkout.status == "pending":
            await webhooks.expire_checkout(session, checkout, status="failed")

    async def _read(self, session: AsyncSession, checkout: Checkout) -> CheckoutRead:
        payment = await repo.payment(session, checkout.payment_id)
        licence = await access_repo.licence(session, checkout.licence_id)
        plan = await products_repo.plan(session, licence.plan_id) if licence else None
        amount = payment.amount if payment else (money.with_tax(plan.amount, plan.tax_bps) if plan else 0)
        return CheckoutRead(
            session_id=checkout.session_id,
            url=checkout.url,
            method=checkout.method,
            payment_id=payment.id if payment else None,
            amount=amount,
            currency=payment.currency if payment else (plan.currency if plan else ""),
            status=checkout.status,
            simulated=self._stripe().simulated,
        )

    # --- payout accounts --------------------------------------------------------------------

    async def payout_account(self, org_id: str) -> PayoutAccountRead:
        """The provider's Connect account (made at Stripe and kept the first time) and a fresh
        onboarding link for it — each Stripe call with no transaction open."""
        async with read_transaction(self.sessions) as session:
            org = await orgs_repo.get_org(session, org_id)
            if org is None:
                raise NotFound(f"No organisation {org_id}.")
            ensure_org_admin(self.caller, org_id)
            if org.kind != "provider":
                raise Conflict("Only providers receive payouts.", code="not_a_provider")
            gateway = self._stripe()
            account = await repo.payout_account(session, org_id)
            known = (account.account_id, account.transfers_active) if account else None
            jurisdiction = org.jurisdiction
        if known is None:
            made = await gateway.create_account(org_id, jurisdiction, None)
            # Kept before the link is asked for: an account Stripe made is never forgotten.
            async with write_transaction(self.sessions) as session:
                account = await repo.add_payout_account(session, org_id, made)
                known = (account.account_id, account.transfers_active)
        account_id, transfers_active = known
        base = f"{self.settings.public_url}/v1/orgs/{org_id}"
        url = await gateway.account_link(account_id, f"{base}?payout=refresh", f"{base}?payout=done")
        return PayoutAccountRead(
            url=url, account_id=account_id, transfers_active=transfers_active, simulated=gateway.simulated
        )


def _name(product: Product, plan: Plan) -> str:
    return f"{product.title[:200]} — {plan.name}"


def _ordered(value: Any) -> Any:
    """Keys sorted at every level: the request is encoded alike on every attempt, whatever order
    the database gave the stored params back in (PostgreSQL's JSONB keeps its own)."""
    if isinstance(value, dict):
        return {k: _ordered(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_ordered(v) for v in value]
    return value
