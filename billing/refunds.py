"""Refunds Lode makes: recorded first, sent to Stripe by the outbox, booked when Stripe confirms.

``request`` records a pending refund (what it holds counts against what is left to refund) and
queues it in the caller's transaction, so nothing has left Lode if that transaction fails. ``send``
refunds through Stripe with the key ``refund:{id}`` — the same on every retry, so a crash between
Stripe's answer and our commit cannot refund twice — and then books it: the parts give back in
proportion (``payments.reverse``), which queues the providers' transfer reversals in turn.
A refusal from Stripe marks the refund failed and frees what it held.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from billing import payments
from billing import repository as repo
from billing.models import Payment, Refund
from catalog import audit, outbox
from catalog.access import repository as access_repo
from catalog.db import utcnow, write_transaction
from catalog.errors import Conflict, DomainError, ServiceUnavailable
from catalog.ids import new_id

EVENT = "refund.send"


async def left_to_refund(session: AsyncSession, payment: Payment) -> int:
    return payment.amount - payment.refunded - payment.disputed - await repo.pending_refunds(session, payment.id)


async def request(
    session: AsyncSession, payment: Payment, amount: int | None, reason: str, actor: Any, *, created_by: str | None
) -> Refund:
    """A pending refund of ``amount`` (default: all that is left) of a locked, paid payment."""
    if payment.status not in ("paid", "partially_refunded") or payment.charge_id is None:
        raise Conflict(f"The payment is {payment.status}: nothing to refund.", code="invalid_transition")
    remaining = await left_to_refund(session, payment)
    amount = remaining if amount is None else amount
    if amount > remaining or amount <= 0:
        raise Conflict(
            f"Only {remaining} {payment.currency} is left to refund.",
            code="refund_exceeds_remaining",
            remaining=remaining,
        )
    refund = Refund(
        id=new_id("rfd"),
        payment_id=payment.id,
        kind="refund",
        amount=amount,
        reason=reason,
        status="pending",
        parts={},
        created_by=created_by,
        created_at=utcnow(),
    )
    session.add(refund)
    await session.flush()
    outbox.emit(session, EVENT, {"refund_id": refund.id}, dedupe_key=f"refund:{refund.id}")
    parties = await access_repo.party_org_ids(session, payment.licence_id)
    audit.record(
        session, actor, "refund.requested", "payment", payment.id, parties, {"refund_id": refund.id, "amount": amount}
    )
    return refund


async def send(ctx: outbox.JobContext, payload: dict[str, Any]) -> None:
    gateway = ctx.services["gateway"]
    async with write_transaction(ctx.sessions) as session:
        refund = await repo.refund(session, payload["refund_id"])
        if refund is None or refund.status != "pending":
            return
        payment = await repo.payment(session, refund.payment_id)
        assert payment is not None and payment.charge_id is not None
        charge, amount, reason = payment.charge_id, refund.amount, refund.reason
    refused = None
    try:
        stripe_id = await gateway.refund(charge, amount, refund.id, "requested_by_customer")
    except ServiceUnavailable:
        raise  # Stripe unavailable: the outbox retries with the same key
    except DomainError as exc:
        stripe_id, refused = None, exc.detail
    async with write_transaction(ctx.sessions) as session:
        payment = await repo.payment(session, refund.payment_id, lock=True)
        refund = await repo.refund(session, payload["refund_id"], lock=True)
        if payment is None or refund is None or refund.status != "pending":
            return
        if refused is not None:
            refund.status = "failed"
            parties = await access_repo.party_org_ids(session, payment.licence_id)
            audit.record(
                session,
                None,
                "refund.failed",
                "payment",
                payment.id,
                parties,
                {"refund_id": refund.id, "amount": amount, "reason": reason, "stripe": refused},
            )
            return
        refund.status, refund.stripe_id = "succeeded", stripe_id
        await payments.reverse(session, payment, refund, None)
