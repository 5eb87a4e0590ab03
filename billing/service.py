"""Billing's API: paying for a licence, payout accounts, payments and refunds (statements are in
``billing/statements.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing import money, refunds, statements, webhooks
from billing import repository as repo
from billing.gateway import Gateway
from billing.models import Checkout, Payment, PayoutAccount, StripeCustomer
from billing.schemas import (
    AllocationRead,
    CheckoutCreate,
    CheckoutRead,
    PaymentList,
    PaymentRead,
    PayoutAccountRead,
    RefundCreate,
    RefundRead,
    StatementRead,
    TransferRead,
)
from catalog.access import repository as access_repo
from catalog.access.models import Licence
from catalog.auth import Principal, ensure_member_with, ensure_org_admin
from catalog.db import utcnow
from catalog.errors import Conflict, NotFound, ServiceUnavailable, ValidationFailed
from catalog.ids import new_id
from catalog.orgs import repository as orgs_repo
from catalog.pagination import PageRequest
from catalog.products import repository as products_repo
from catalog.settings import Settings

PRICED = ("one_time", "subscription", "metered")
PROCESSING = (
    "A payment for this licence is being processed; its outcome will activate the licence or free a new checkout."
)


class BillingService:
    def __init__(self, session: AsyncSession, caller: Principal, gateway: Gateway | None, settings: Settings) -> None:
        self.session = session
        self.caller = caller
        self.gateway = gateway
        self.settings = settings

    def _stripe(self) -> Gateway:
        if self.gateway is None:
            raise ServiceUnavailable(
                "Payments are not configured: set LODE_STRIPE_API_KEY.", code="billing_not_configured"
            )
        return self.gateway

    # --- paying -----------------------------------------------------------------------------

    async def checkout(self, licence_id: str, data: CheckoutCreate) -> CheckoutRead:
        licence = await self._party_licence(licence_id, lock=True)
        ensure_member_with(self.caller, licence.consumer_org_id, "buyer")
        plan = await products_repo.plan(self.session, licence.plan_id)
        product = await products_repo.get(self.session, licence.product_id)
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
        gateway = self._stripe()
        existing = await repo.open_checkout(self.session, licence.id)
        if existing is not None and existing.status == "processing":
            raise Conflict(PROCESSING, code="payment_processing")
        if existing is not None and (existing.expires_at is None or existing.expires_at > utcnow()):
            return await self._checkout_read(existing, gateway)
        if existing is not None:  # its time ran out before Stripe's event said so
            # Closed at Stripe first: a session paid in its last moments must not be paid twice.
            if existing.session_id and await gateway.close_checkout(existing.session_id) == "complete":
                raise Conflict(PROCESSING, code="payment_processing")
            await webhooks.expire_checkout(self.session, existing)
        customer = await self._customer(gateway, licence.consumer_org_id)
        tax = money.tax_on(plan.amount, plan.tax_bps)
        payment = Payment(
            id=new_id("pay"),
            licence_id=licence.id,
            consumer_org_id=licence.consumer_org_id,
            product_id=licence.product_id,
            revenue_share_id=licence.revenue_share_id,
            currency=plan.currency,
            amount=plan.amount + tax,
            tax=tax,
            status="pending",
            source="invoice" if data.method == "invoice" else "checkout",
            created_at=utcnow(),
        )
        checkout = Checkout(
            id=new_id("chk"),
            licence_id=licence.id,
            payment_id=payment.id,
            method=data.method,
            mode="",
            url="",
            status="open",
            created_at=utcnow(),
        )
        metadata = {"lode_licence_id": licence.id, "lode_payment_id": payment.id}
        name = f"{product.title[:200]} — {plan.name}"
        if data.method == "invoice":
            invoice = await gateway.send_invoice(
                customer, plan.currency.lower(), payment.amount, name, metadata, key=f"invoice:{payment.id}"
            )
            payment.invoice_id = invoice["id"]
            checkout.mode, checkout.invoice_id = "invoice", invoice["id"]
            checkout.url = invoice.get("hosted_invoice_url") or f"https://invoice.stripe.com/i/{invoice['id']}"
        else:
            params = await self._session_params(licence, plan, product.id, name, customer, payment, data, metadata)
            made = await gateway.create_checkout(params, key=f"checkout:{checkout.id}")
            checkout.mode, checkout.session_id, checkout.url = params["mode"], made["id"], made["url"]
            checkout.expires_at = datetime.fromtimestamp(made["expires_at"], UTC) if made.get("expires_at") else None
        if checkout.mode == "subscription":
            payment = None  # subscriptions are paid by their invoices, each its own payment
        if payment is not None:
            self.session.add(payment)
        self.session.add(checkout)
        await self.session.flush()
        return await self._checkout_read(checkout, gateway)

    async def _session_params(
        self,
        licence: Licence,
        plan: Any,
        product_id: str,
        name: str,
        customer: str,
        payment: Payment,
        data: CheckoutCreate,
        metadata: dict[str, str],
    ) -> dict[str, Any]:
        base = f"{self.settings.public_url}/v1/licences/{licence.id}"
        params: dict[str, Any] = {
            "customer": customer,
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
        items: list[dict[str, Any]] = []
        if plan.amount:
            items.append(
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
        for dimension, unit_price in sorted(plan.unit_prices.items()):
            items.append({"price": await self._metered_price(plan, product_id, dimension, int(unit_price), name)})
        params["line_items"] = items
        return params

    async def _metered_price(self, plan: Any, product_id: str, dimension: str, unit_price: int, name: str) -> str:
        from billing import meters

        meter = await meters.ensure_meter(self.session, self._stripe(), product_id, dimension)
        return await self._stripe().metered_price(
            plan.id,
            dimension,
            plan.currency.lower(),
            money.with_tax(unit_price, plan.tax_bps),
            plan.interval or "month",
            meter.meter_id,
            f"{name} ({dimension})",
        )

    async def _customer(self, gateway: Gateway, org_id: str) -> str:
        found = await repo.customer_id(self.session, org_id)
        if found:
            return found
        org = await orgs_repo.get_org(self.session, org_id)
        assert org is not None
        customer = await gateway.create_customer(org_id, org.name)
        self.session.add(StripeCustomer(org_id=org_id, customer_id=customer, created_at=utcnow()))
        await self.session.flush()
        return customer

    async def _checkout_read(self, checkout: Checkout, gateway: Gateway) -> CheckoutRead:
        payment = await repo.payment(self.session, checkout.payment_id)
        licence = await access_repo.licence(self.session, checkout.licence_id)
        plan = await products_repo.plan(self.session, licence.plan_id) if licence else None
        amount = payment.amount if payment else (money.with_tax(plan.amount, plan.tax_bps) if plan else 0)
        return CheckoutRead(
            session_id=checkout.session_id,
            url=checkout.url,
            method=checkout.method,
            payment_id=payment.id if payment else None,
            amount=amount,
            currency=payment.currency if payment else (plan.currency if plan else ""),
            status=checkout.status,
            simulated=gateway.simulated,
        )

    # --- payout accounts --------------------------------------------------------------------

    async def payout_account(self, org_id: str) -> PayoutAccountRead:
        org = await orgs_repo.get_org(self.session, org_id)
        if org is None:
            raise NotFound(f"No organisation {org_id}.")
        ensure_org_admin(self.caller, org_id)
        if org.kind != "provider":
            raise Conflict("Only providers receive payouts.", code="not_a_provider")
        gateway = self._stripe()
        account = await repo.payout_account(self.session, org_id)
        if account is None:
            account_id = await gateway.create_account(org_id, org.jurisdiction, None)
            account = PayoutAccount(org_id=org_id, account_id=account_id, created_at=utcnow())
            self.session.add(account)
            await self.session.flush()
        base = f"{self.settings.public_url}/v1/orgs/{org_id}"
        url = await gateway.account_link(account.account_id, f"{base}?payout=refresh", f"{base}?payout=done")
        return PayoutAccountRead(
            url=url,
            account_id=account.account_id,
            transfers_active=account.transfers_active,
            simulated=gateway.simulated,
        )

    # --- payments and refunds ---------------------------------------------------------------

    async def _party_licence(self, licence_id: str, *, lock: bool = False) -> Licence:
        return await access_repo.party_licence(self.session, self.caller, licence_id, lock=lock)

    async def list_payments(self, page: PageRequest, licence_id: str | None) -> PaymentList:
        scope = None if self.caller.is_operator else access_repo.licence_scope_ids(self.caller)
        result = await repo.list_payments(self.session, scope, page, licence_id)
        return PaymentList(items=await self._reads(result.items), next_cursor=result.next_cursor)

    async def get_payment(self, payment_id: str) -> PaymentRead:
        payment = await repo.payment(self.session, payment_id)
        if payment is None:
            raise NotFound(f"No payment {payment_id}.")
        await self._party_licence(payment.licence_id)
        return (await self._reads([payment]))[0]

    async def refund(self, payment_id: str, data: RefundCreate) -> PaymentRead:
        """A refund, recorded as pending and sent to Stripe by the outbox (``billing/refunds.py``)."""
        payment = await repo.payment(self.session, payment_id, lock=True)
        if payment is None:
            raise NotFound(f"No payment {payment_id}.")
        self._stripe()
        await refunds.request(
            self.session, payment, data.amount, data.reason, self.caller, created_by=self.caller.user_id
        )
        return (await self._reads([payment]))[0]

    async def _reads(self, rows: list[Payment]) -> list[PaymentRead]:
        ids = [p.id for p in rows]
        allocations = await repo.allocations(self.session, ids)
        transfers = await repo.transfers(self.session, ids)
        refunds = await repo.refunds(self.session, ids)
        return [
            PaymentRead(
                id=p.id,
                licence_id=p.licence_id,
                consumer_org_id=p.consumer_org_id,
                product_id=p.product_id,
                amount=p.amount,
                tax=p.tax,
                currency=p.currency,
                status=p.status,
                source=p.source,
                refunded=p.refunded,
                disputed=p.disputed,
                fee=p.fee,
                paid_at=p.paid_at,
                created_at=p.created_at,
                allocations=[
                    AllocationRead(party=a.party, org_id=a.org_id, amount=a.amount, reversed=a.reversed)
                    for a in allocations[p.id]
                ],
                transfers=[
                    TransferRead(
                        id=t.id,
                        org_id=t.org_id,
                        method=t.method,
                        currency=t.currency,
                        fx_rate=t.fx_rate,
                        amount=t.amount,
                        reversed=t.reversed,
                        status=t.status,
                        idempotency_key=t.key,
                        stripe_transfer_id=t.stripe_transfer_id,
                        sent_at=t.sent_at,
                        attempts=t.attempts,
                        last_error=t.last_error,
                    )
                    for t in transfers[p.id]
                ],
                refunds=[
                    RefundRead(
                        id=r.id,
                        kind=r.kind,
                        amount=r.amount,
                        reason=r.reason,
                        status=r.status,
                        parts={k: int(v) for k, v in r.parts.items()},
                        created_at=r.created_at,
                    )
                    for r in refunds[p.id]
                ],
            )
            for p in rows
        ]

    # --- statements -------------------------------------------------------------------------

    async def statement(self, org_id: str, period: str) -> StatementRead:
        return await statements.read(self.session, self.caller, org_id, period)
