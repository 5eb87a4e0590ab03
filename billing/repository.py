"""SQL for billing: identities, checkouts, payments and their parts, the inbox, meters, statements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from billing.models import (
    Allocation,
    Checkout,
    LedgerEntry,
    Meter,
    MeterReport,
    Payment,
    PayoutAccount,
    Refund,
    StripeCustomer,
    Subscription,
    Transfer,
    TransferReversal,
    WebhookEvent,
)
from catalog.db import utcnow
from catalog.pagination import Page, PageRequest, paginate


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert


# --- identities ---------------------------------------------------------------------------------


async def customer_id(session: AsyncSession, org_id: str) -> str | None:
    row = await session.get(StripeCustomer, org_id)
    return row.customer_id if row else None


async def add_customer(session: AsyncSession, org_id: str, customer_id: str) -> None:
    """Keep the organisation's Stripe customer, unless a concurrent request kept it first (the same
    one: both asked Stripe under the key ``customer:{org}``)."""
    row = {"org_id": org_id, "customer_id": customer_id, "created_at": utcnow()}
    await session.execute(_insert(session)(StripeCustomer).values(row).on_conflict_do_nothing())


async def payout_account(session: AsyncSession, org_id: str, *, lock: bool = False) -> PayoutAccount | None:
    return await session.get(PayoutAccount, org_id, with_for_update=lock or None)


async def add_payout_account(session: AsyncSession, org_id: str, account_id: str) -> PayoutAccount:
    """The provider's Connect account, kept once (concurrent requests asked under one key)."""
    row = {
        "org_id": org_id,
        "account_id": account_id,
        "method": "stripe_connect",
        "transfers_active": False,
        "created_at": utcnow(),
    }
    await session.execute(_insert(session)(PayoutAccount).values(row).on_conflict_do_nothing())
    found = await payout_account(session, org_id)
    assert found is not None
    return found


async def payout_account_by_stripe_id(session: AsyncSession, account_id: str) -> PayoutAccount | None:
    """Locked: account.updated and a new transfer decide "outstanding or not" one after the other."""
    stmt = select(PayoutAccount).where(PayoutAccount.account_id == account_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def stripe_identities(session: AsyncSession) -> tuple[list[StripeCustomer], list[PayoutAccount]]:
    """Every customer and Connect account Lode has made at Stripe."""
    customers = (await session.execute(select(StripeCustomer))).scalars().all()
    accounts = (await session.execute(select(PayoutAccount))).scalars().all()
    return list(customers), list(accounts)


# --- checkouts and subscriptions ----------------------------------------------------------------


async def open_checkout(session: AsyncSession, licence_id: str) -> Checkout | None:
    """The licence's newest session that may still be paid: being prepared, open, or completed with
    a bank debit still processing."""
    stmt = (
        select(Checkout)
        .where(Checkout.licence_id == licence_id, Checkout.status.in_(("pending", "open", "processing")))
        .order_by(Checkout.created_at.desc())
        .with_for_update()
    )
    return (await session.execute(stmt)).scalars().first()


async def checkout(session: AsyncSession, checkout_id: str) -> Checkout | None:
    """Locked: recording Stripe's answer and a webhook's news about it never interleave."""
    stmt = select(Checkout).where(Checkout.id == checkout_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def checkout_by_session(session: AsyncSession, session_id: str) -> Checkout | None:
    stmt = select(Checkout).where(Checkout.session_id == session_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def subscription(session: AsyncSession, licence_id: str) -> Subscription | None:
    return await session.get(Subscription, licence_id)


async def subscription_by_stripe_id(session: AsyncSession, subscription_id: str) -> Subscription | None:
    stmt = select(Subscription).where(Subscription.subscription_id == subscription_id)
    return (await session.execute(stmt)).scalar_one_or_none()


# --- payments -----------------------------------------------------------------------------------


async def payment(session: AsyncSession, payment_id: str, *, lock: bool = False) -> Payment | None:
    stmt = select(Payment).where(Payment.id == payment_id)
    if lock:
        stmt = stmt.with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def other_one_time_payment(session: AsyncSession, payment: Payment) -> bool:
    """Whether another checkout or invoice payment for the same licence was booked as paid."""
    stmt = select(Payment.id).where(
        Payment.licence_id == payment.licence_id,
        Payment.id != payment.id,
        Payment.source != "subscription_invoice",
        Payment.status.in_(("paid", "partially_refunded", "refunded")),
    )
    return (await session.execute(stmt.limit(1))).first() is not None


async def payment_by_invoice(session: AsyncSession, invoice_id: str) -> Payment | None:
    stmt = select(Payment).where(Payment.invoice_id == invoice_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def payment_by_charge(session: AsyncSession, charge_id: str) -> Payment | None:
    stmt = select(Payment).where(Payment.charge_id == charge_id).with_for_update()
    return (await session.execute(stmt)).scalars().first()


async def list_payments(
    session: AsyncSession, licence_ids: Select | None, page: PageRequest, licence_id: str | None
) -> Page[Payment]:
    stmt = select(Payment).where(Payment.status != "pending")
    if licence_ids is not None:
        stmt = stmt.where(Payment.licence_id.in_(licence_ids))
    if licence_id is not None:
        stmt = stmt.where(Payment.licence_id == licence_id)
    return await paginate(session, stmt, Payment.id, page)


async def allocations(session: AsyncSession, payment_ids: Sequence[str]) -> dict[str, list[Allocation]]:
    found: dict[str, list[Allocation]] = {p: [] for p in payment_ids}
    if payment_ids:
        stmt = select(Allocation).where(Allocation.payment_id.in_(payment_ids)).order_by(Allocation.id)
        for row in (await session.execute(stmt)).scalars():
            found[row.payment_id].append(row)
    return found


async def transfers(
    session: AsyncSession, payment_ids: Sequence[str], *, lock: bool = False
) -> dict[str, list[Transfer]]:
    found: dict[str, list[Transfer]] = {p: [] for p in payment_ids}
    if payment_ids:
        stmt = select(Transfer).where(Transfer.payment_id.in_(payment_ids)).order_by(Transfer.id)
        stmt = stmt.with_for_update() if lock else stmt
        for row in (await session.execute(stmt)).scalars():
            found[row.payment_id].append(row)
    return found


async def refunds(session: AsyncSession, payment_ids: Sequence[str]) -> dict[str, list[Refund]]:
    found: dict[str, list[Refund]] = {p: [] for p in payment_ids}
    if payment_ids:
        stmt = select(Refund).where(Refund.payment_id.in_(payment_ids)).order_by(Refund.id)
        for row in (await session.execute(stmt)).scalars():
            found[row.payment_id].append(row)
    return found


async def refund_by_stripe_id(session: AsyncSession, stripe_id: str) -> Refund | None:
    stmt = select(Refund).where(Refund.stripe_id == stripe_id)
    return (await session.execute(stmt)).scalar_one_or_none()


async def pending_refunds(session: AsyncSession, payment_id: str) -> int:
    """What Lode's own refunds of a payment hold that Stripe has not confirmed yet."""
    stmt = select(func.coalesce(func.sum(Refund.amount), 0)).where(
        Refund.payment_id == payment_id, Refund.kind == "refund", Refund.status == "pending"
    )
    return int((await session.execute(stmt)).scalar_one())


async def refund(session: AsyncSession, refund_id: str, *, lock: bool = False) -> Refund | None:
    stmt = select(Refund).where(Refund.id == refund_id)
    return (await session.execute(stmt.with_for_update() if lock else stmt)).scalar_one_or_none()


async def reversal(session: AsyncSession, reversal_id: str, *, lock: bool = False) -> TransferReversal | None:
    stmt = select(TransferReversal).where(TransferReversal.id == reversal_id)
    return (await session.execute(stmt.with_for_update() if lock else stmt)).scalar_one_or_none()


async def reversals(session: AsyncSession, transfer_ids: Sequence[str]) -> dict[str, list[TransferReversal]]:
    found: dict[str, list[TransferReversal]] = {t: [] for t in transfer_ids}
    if transfer_ids:
        stmt = select(TransferReversal).where(TransferReversal.transfer_id.in_(transfer_ids))
        for row in (await session.execute(stmt.order_by(TransferReversal.created_at))).scalars():
            found[row.transfer_id].append(row)
    return found


async def transfer(session: AsyncSession, transfer_id: str) -> Transfer | None:
    """Locked: sending, reversing and re-sending a transfer never interleave."""
    stmt = select(Transfer).where(Transfer.id == transfer_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def outstanding_transfers(session: AsyncSession, org_id: str) -> list[Transfer]:
    stmt = select(Transfer).where(Transfer.org_id == org_id, Transfer.status == "outstanding")
    return list((await session.execute(stmt)).scalars())


# --- the inbox ------------------------------------------------------------------------------------


async def record_event(session: AsyncSession, event: dict[str, Any]) -> bool:
    """Insert the event unless its id was seen before; True when new."""
    row = {
        "event_id": event["id"],
        "type": event.get("type", ""),
        "account": event.get("account"),
        "payload": event,
        "received_at": utcnow(),
    }
    result = await session.execute(_insert(session)(WebhookEvent).values(row).on_conflict_do_nothing())
    return bool(result.rowcount)


async def unprocessed_event(session: AsyncSession, event_id: str) -> dict[str, Any] | None:
    """The event's payload if it is not processed yet (unlocked: a look before the work)."""
    stmt = select(WebhookEvent.payload).where(WebhookEvent.event_id == event_id, WebhookEvent.processed_at.is_(None))
    return (await session.execute(stmt)).scalar_one_or_none()


async def claim_event(session: AsyncSession, event_id: str) -> WebhookEvent | None:
    """The event if it is not processed yet (locked for this transaction)."""
    stmt = select(WebhookEvent).where(WebhookEvent.event_id == event_id, WebhookEvent.processed_at.is_(None))
    return (await session.execute(stmt.with_for_update())).scalar_one_or_none()


async def mark_processed(session: AsyncSession, event_id: str, outcome: str) -> None:
    await session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.event_id == event_id)
        .values(processed_at=utcnow(), outcome=outcome)
        .execution_options(synchronize_session=False)
    )


# --- meters ---------------------------------------------------------------------------------------


async def meter(session: AsyncSession, product_id: str, dimension: str) -> Meter | None:
    return await session.get(Meter, (product_id, dimension))


async def add_meter(session: AsyncSession, product_id: str, dimension: str, meter_id: str, event_name: str) -> None:
    """Keep the product's Stripe meter for a dimension, once (concurrent senders asked under one key)."""
    row = {"product_id": product_id, "dimension": dimension, "meter_id": meter_id, "event_name": event_name}
    await session.execute(_insert(session)(Meter).values(row).on_conflict_do_nothing())


async def reported_units(session: AsyncSession, licence_id: str, dimension: str, period: date) -> int:
    row = await session.get(MeterReport, (licence_id, dimension, period))
    return row.units if row else 0


async def advance_reported(
    session: AsyncSession, licence_id: str, dimension: str, period: date, was: int, units: int
) -> bool:
    """Move what is reported from ``was`` to ``units`` in one conditional statement (STYLE rule 5):
    False if another worker moved it first, which then reports nothing."""
    values = {
        "licence_id": licence_id,
        "dimension": dimension,
        "period_start": period,
        "units": units,
        "updated_at": utcnow(),
    }
    stmt = _insert(session)(MeterReport).values(values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["licence_id", "dimension", "period_start"],
        set_={"units": stmt.excluded.units, "updated_at": stmt.excluded.updated_at},
        where=MeterReport.units == was,
    ).returning(MeterReport.units)
    return (await session.execute(stmt)).scalar_one_or_none() is not None


# --- statements -----------------------------------------------------------------------------------


async def ledger_sums(
    session: AsyncSession,
    org_id: str | None,
    accounts: Sequence[str],
    since: datetime | None,
    until: datetime,
    *,
    any_org: bool = False,
) -> dict[tuple[str, str, str], int]:
    """Sums of entries by (kind, account, currency): one organisation's legs, or everyone's."""
    stmt = (
        select(LedgerEntry.kind, LedgerEntry.account, LedgerEntry.currency, func.sum(LedgerEntry.amount))
        .where(LedgerEntry.account.in_(accounts), LedgerEntry.posted_at < until)
        .group_by(LedgerEntry.kind, LedgerEntry.account, LedgerEntry.currency)
    )
    if not any_org:
        stmt = stmt.where(LedgerEntry.org_id == org_id)
    if since is not None:
        stmt = stmt.where(LedgerEntry.posted_at >= since)
    return {(k, a, c): int(total) for k, a, c, total in (await session.execute(stmt)).all()}


async def journal_count(session: AsyncSession, org_id: str, since: datetime, until: datetime) -> int:
    stmt = select(func.count(func.distinct(LedgerEntry.journal_id))).where(
        LedgerEntry.org_id == org_id, LedgerEntry.posted_at >= since, LedgerEntry.posted_at < until
    )
    return int((await session.execute(stmt)).scalar_one())


async def journal_totals(session: AsyncSession) -> list[int]:
    """Each journal's sum: all zero in a balanced ledger (the tests and a health check read it)."""
    stmt = select(func.sum(LedgerEntry.amount)).group_by(LedgerEntry.journal_id)
    return [int(v) for v in (await session.execute(stmt)).scalars()]
