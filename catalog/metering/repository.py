"""SQL for metering: single-statement counter and budget changes, the bulk usage insert, reports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Integer, Select, and_, cast, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.db import utcnow
from catalog.metering.models import EpsilonBudget, Reservation, UsageCounter, UsageEvent

BUCKET_SECONDS = 900  # every real time-zone offset is a multiple of 15 minutes


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert


# --- caps -----------------------------------------------------------------------------------------


async def ensure_counters(session: AsyncSession, licence_id: str, period: date, dimensions: Sequence[str]) -> None:
    if dimensions:
        rows = [
            {"licence_id": licence_id, "dimension": d, "period_start": period, "used": 0, "updated_at": utcnow()}
            for d in dimensions
        ]
        await session.execute(_insert(session)(UsageCounter).values(rows).on_conflict_do_nothing())


async def try_add(session: AsyncSession, licence_id: str, dimension: str, period: date, n: int, cap: int) -> bool:
    """Add ``n`` if that keeps the counter within ``cap``: one conditional statement (STYLE rule 5)."""
    result = await session.execute(
        update(UsageCounter)
        .where(
            UsageCounter.licence_id == licence_id,
            UsageCounter.dimension == dimension,
            UsageCounter.period_start == period,
            UsageCounter.used + n <= cap,
        )
        .values(used=UsageCounter.used + n, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def add(session: AsyncSession, licence_id: str, dimension: str, period: date, n: int) -> int:
    """Add (or, negative, give back) unconditionally; answers the new total."""
    result = await session.execute(
        update(UsageCounter)
        .where(
            UsageCounter.licence_id == licence_id,
            UsageCounter.dimension == dimension,
            UsageCounter.period_start == period,
        )
        .values(used=UsageCounter.used + n, updated_at=utcnow())
        .returning(UsageCounter.used)
        .execution_options(synchronize_session=False)
    )
    return int(result.scalar_one_or_none() or 0)


async def counters(session: AsyncSession, licence_id: str, period: date) -> dict[str, int]:
    stmt = select(UsageCounter.dimension, UsageCounter.used).where(
        UsageCounter.licence_id == licence_id, UsageCounter.period_start == period
    )
    return {d: int(u) for d, u in (await session.execute(stmt)).all()}


# --- ε budgets --------------------------------------------------------------------------------------


async def ensure_budget(session: AsyncSession, org_id: str, product_id: str, total_micro: int) -> None:
    row = {
        "consumer_org_id": org_id,
        "product_id": product_id,
        "total_micro": total_micro,
        "spent_micro": 0,
        "updated_at": utcnow(),
    }
    await session.execute(_insert(session)(EpsilonBudget).values(row).on_conflict_do_nothing())


async def try_spend(session: AsyncSession, org_id: str, product_id: str, micro: int) -> bool:
    result = await session.execute(
        update(EpsilonBudget)
        .where(
            EpsilonBudget.consumer_org_id == org_id,
            EpsilonBudget.product_id == product_id,
            EpsilonBudget.spent_micro + micro <= EpsilonBudget.total_micro,
        )
        .values(spent_micro=EpsilonBudget.spent_micro + micro, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def refund(session: AsyncSession, org_id: str, product_id: str, micro: int) -> None:
    await session.execute(
        update(EpsilonBudget)
        .where(EpsilonBudget.consumer_org_id == org_id, EpsilonBudget.product_id == product_id)
        .values(spent_micro=EpsilonBudget.spent_micro - micro, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


async def budget(session: AsyncSession, org_id: str, product_id: str) -> EpsilonBudget | None:
    return await session.get(EpsilonBudget, (org_id, product_id))


# --- reservations -----------------------------------------------------------------------------------


async def reservation(session: AsyncSession, reservation_id: str) -> Reservation | None:
    stmt = select(Reservation).where(Reservation.id == reservation_id).with_for_update()
    return (await session.execute(stmt)).scalar_one_or_none()


async def close_reservation(session: AsyncSession, reservation_id: str, status: str) -> bool:
    """open → settled | released, once: a second settle (a retry, the sweep) finds nothing to do."""
    result = await session.execute(
        update(Reservation)
        .where(Reservation.id == reservation_id, Reservation.status == "open")
        .values(status=status, settled_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def stale_reservations(session: AsyncSession, now: datetime, limit: int = 500) -> list[Reservation]:
    stmt = (
        select(Reservation)
        .where(Reservation.status == "open", Reservation.expires_at < now)
        .order_by(Reservation.expires_at)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


# --- usage events -----------------------------------------------------------------------------------


async def insert_events(session: AsyncSession, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """One bulk statement per batch; answers the (licence, key) pairs actually inserted."""
    if not rows:
        return set()
    stmt = (
        _insert(session)(UsageEvent)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["licence_id", "idempotency_key"])
        .returning(UsageEvent.licence_id, UsageEvent.idempotency_key)
    )
    return {(lic, key) for lic, key in (await session.execute(stmt)).all()}


async def flag_over_cap(session: AsyncSession, licence_id: str, keys: Sequence[str]) -> None:
    await session.execute(
        update(UsageEvent)
        .where(UsageEvent.licence_id == licence_id, UsageEvent.idempotency_key.in_(keys))
        .values(over_cap=True)
        .execution_options(synchronize_session=False)
    )


async def existing_events(session: AsyncSession, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    if not pairs:
        return {}
    stmt = select(UsageEvent.licence_id, UsageEvent.idempotency_key, UsageEvent.payload_sha256).where(
        tuple_(UsageEvent.licence_id, UsageEvent.idempotency_key).in_(list(pairs))
    )
    return {(lic, key): digest for lic, key, digest in (await session.execute(stmt)).all()}


def _bucket(session: AsyncSession) -> Any:
    if session.bind.dialect.name == "postgresql":
        return func.floor(func.extract("epoch", UsageEvent.occurred_at) / BUCKET_SECONDS)
    return cast(func.strftime("%s", UsageEvent.occurred_at), Integer) / BUCKET_SECONDS


async def usage_buckets(
    session: AsyncSession, scope: Select, since: datetime, until: datetime, licence_id: str | None
) -> list[tuple[int, str, str | None, str, int]]:
    """(15-minute bucket, dimension, analyst, licence, quantity) for the licences in ``scope``."""
    bucket = _bucket(session).label("bucket")
    conditions = [UsageEvent.occurred_at >= since, UsageEvent.occurred_at < until, UsageEvent.licence_id.in_(scope)]
    if licence_id is not None:
        conditions.append(UsageEvent.licence_id == licence_id)
    stmt = (
        select(
            bucket, UsageEvent.dimension, UsageEvent.analyst_id, UsageEvent.licence_id, func.sum(UsageEvent.quantity)
        )
        .where(and_(*conditions))
        .group_by(bucket, UsageEvent.dimension, UsageEvent.analyst_id, UsageEvent.licence_id)
    )
    return [(int(b), d, a, lic, int(q)) for b, d, a, lic, q in (await session.execute(stmt)).all()]


async def period_usage(session: AsyncSession, licence_id: str, since: datetime, until: datetime) -> dict[str, int]:
    stmt = (
        select(UsageEvent.dimension, func.sum(UsageEvent.quantity))
        .where(UsageEvent.licence_id == licence_id, UsageEvent.occurred_at >= since, UsageEvent.occurred_at < until)
        .group_by(UsageEvent.dimension)
    )
    return {d: int(q) for d, q in (await session.execute(stmt)).all()}
