"""Billing's API in the request's transaction: payments, refunds and statements (``statements.py``).

Paying for a licence and payout-account links wait on Stripe, so they are ``billing/checkout.py``'s,
in phases of their own."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from billing import refunds, statements
from billing import repository as repo
from billing.gateway import Gateway, configured
from billing.models import Payment
from billing.schemas import (
    AllocationRead,
    PaymentList,
    PaymentRead,
    RefundCreate,
    RefundRead,
    StatementRead,
    TransferRead,
)
from catalog.access import repository as access_repo
from catalog.access.models import Licence
from catalog.auth import Principal
from catalog.errors import NotFound
from catalog.pagination import PageRequest
from catalog.settings import Settings


class BillingService:
    def __init__(self, session: AsyncSession, caller: Principal, gateway: Gateway | None, settings: Settings) -> None:
        self.session = session
        self.caller = caller
        self.gateway = gateway
        self.settings = settings

    def _stripe(self) -> Gateway:
        return configured(self.gateway)

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
