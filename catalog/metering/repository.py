"""SQL for metering: single-statement counter and budget changes, the bulk usage insert, reports.

No statement here takes its rows as ``.values(rows)``: SQLAlchemy cannot cache such a statement and
compiles it afresh on every call, which for a 1,000-event batch costs many times the insert itself.
Counters pass their few rows as parameters (``session.execute(stmt, rows)``), which SQLAlchemy still
sends as one multi-row statement ("insertmanyvalues") but compiles once. Usage events go in as
STYLE rule 11 says: ``unnest`` of one array per column on PostgreSQL (one statement text for any
batch size, so one prepared statement), ``executemany`` + rowcount on SQLite.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Integer,
    Row,
    Select,
    and_,
    bindparam,
    case,
    cast,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.db import utcnow
from catalog.metering.models import EpsilonBudget, Reservation, UsageCounter, UsageEvent

BUCKET_SECONDS = 900  # every real time-zone offset is a multiple of 15 minutes
COUNTERS = UsageCounter.__table__
EVENTS = UsageEvent.__table__
CounterKey = tuple[str, str, date]  # (licence_id, dimension, period_start)


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert


# --- caps -----------------------------------------------------------------------------------------


async def counters(session: AsyncSession, licence_id: str, period: date) -> dict[str, int]:
    """A licence's counters in one cap period, by dimension."""
    stmt = select(UsageCounter.dimension, UsageCounter.used).where(
        UsageCounter.licence_id == licence_id, UsageCounter.period_start == period
    )
    return {dimension: used for dimension, used in (await session.execute(stmt)).all()}


async def reserve_counters(
    session: AsyncSession, licence_id: str, period: date, amounts: dict[str, int], caps: dict[str, int]
) -> dict[str, int]:
    """Add each amount to its counter — created at 0 when missing — if that keeps the counter within
    its cap: one conditional statement for every dimension (STYLE rule 5). Answers the counters
    added to, as they now stand; the caller refuses the request (and rolls back) when any is missing."""
    within = {d: n for d, n in amounts.items() if n <= caps[d]}  # more than the cap never fits, even at 0
    if not within:
        return {}
    now = utcnow()
    limits = {f"cap_{d}": caps[d] for d in within}
    rows = [
        {"licence_id": licence_id, "dimension": d, "period_start": period, "used": n, "updated_at": now, **limits}
        for d, n in within.items()
    ]
    stmt = _reserve_statement(session.bind.dialect.name, tuple(within))
    return {dimension: used for dimension, used in (await session.execute(stmt, rows)).all()}


@functools.cache
def _reserve_statement(dialect_name: str, dimensions: tuple[str, ...]) -> Any:
    """Built once per dialect and set of dimensions, the caps as parameters: building this statement
    cost more than running it."""
    stmt = (pg_insert if dialect_name == "postgresql" else sqlite_insert)(COUNTERS)
    cap = case({d: bindparam(f"cap_{d}", type_=BigInteger) for d in dimensions}, value=stmt.excluded.dimension)
    return stmt.on_conflict_do_update(
        index_elements=[COUNTERS.c.licence_id, COUNTERS.c.dimension, COUNTERS.c.period_start],
        set_={"used": COUNTERS.c.used + stmt.excluded.used, "updated_at": stmt.excluded.updated_at},
        where=COUNTERS.c.used + stmt.excluded.used <= cap,
    ).returning(COUNTERS.c.dimension, COUNTERS.c.used)


async def add_counters(session: AsyncSession, amounts: dict[CounterKey, int]) -> dict[CounterKey, int]:
    """Add to each counter unconditionally — created at 0 when missing — in one statement, rows in
    the order given (pass them sorted, so concurrent callers lock in one order); answers the totals."""
    if not amounts:
        return {}
    now = utcnow()
    rows = [
        {"licence_id": lic, "dimension": d, "period_start": period, "used": n, "updated_at": now}
        for (lic, d, period), n in amounts.items()
    ]
    stmt = _add_counters_statement(session.bind.dialect.name)
    return {(lic, d, period): int(used) for lic, d, period, used in (await session.execute(stmt, rows)).all()}


@functools.cache
def _add_counters_statement(dialect_name: str) -> Any:
    """Built once per dialect: every usage batch runs it, and building it cost more than running it."""
    stmt = (pg_insert if dialect_name == "postgresql" else sqlite_insert)(COUNTERS)
    return stmt.on_conflict_do_update(
        index_elements=[COUNTERS.c.licence_id, COUNTERS.c.dimension, COUNTERS.c.period_start],
        set_={"used": COUNTERS.c.used + stmt.excluded.used, "updated_at": stmt.excluded.updated_at},
    ).returning(COUNTERS.c.licence_id, COUNTERS.c.dimension, COUNTERS.c.period_start, COUNTERS.c.used)


async def add_each(session: AsyncSession, licence_id: str, period: date, amounts: dict[str, int]) -> dict[str, int]:
    """Add (or, negative, give back) each amount to its counter of one licence and period,
    unconditionally, in one statement; answers the counters it changed, as they are now."""
    if not amounts:
        return {}
    params = {f"step_{i}": n for i, n in enumerate(amounts.values())}
    stmt = _add_each_statement(tuple(amounts))
    result = await session.execute(stmt, {"licence": licence_id, "period": period, "at": utcnow(), **params})
    return {dimension: used for dimension, used in result.all()}


@functools.cache
def _add_each_statement(dimensions: tuple[str, ...]) -> Any:
    """Built once per set of dimensions, the amounts as parameters (settlement gives back what a
    request did not use on most requests)."""
    step = case(
        {d: bindparam(f"step_{i}", type_=BigInteger) for i, d in enumerate(dimensions)}, value=COUNTERS.c.dimension
    )
    return (
        update(COUNTERS)
        .where(
            COUNTERS.c.licence_id == bindparam("licence"),
            COUNTERS.c.period_start == bindparam("period"),
            COUNTERS.c.dimension.in_(dimensions),
        )
        .values(used=COUNTERS.c.used + step, updated_at=bindparam("at"))
        .returning(COUNTERS.c.dimension, COUNTERS.c.used)
    )


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


async def try_spend(session: AsyncSession, org_id: str, product_id: str, micro: int, total_micro: int) -> int | None:
    """Spend ``micro`` if it fits the grade's total as the policy states it now (a tightened policy binds
    budgets opened under the old one), in one conditional statement; answers what is spent now, or
    None when it did not fit."""
    result = await session.execute(
        update(EpsilonBudget)
        .where(
            EpsilonBudget.consumer_org_id == org_id,
            EpsilonBudget.product_id == product_id,
            EpsilonBudget.spent_micro + micro <= total_micro,
        )
        .values(spent_micro=EpsilonBudget.spent_micro + micro, total_micro=total_micro, updated_at=utcnow())
        .returning(EpsilonBudget.spent_micro)
        .execution_options(synchronize_session=False)
    )
    return result.scalar_one_or_none()


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

_RESERVATIONS = Reservation.__table__
_INSERT_RESERVATION = insert(_RESERVATIONS)  # with its values as parameters, not .values()


async def insert_reservation(session: AsyncSession, reservation: Reservation) -> None:
    """One plain INSERT: the reservation is never changed through the ORM, so it skips the flush. The
    values go as parameters of one shared statement (``.values()`` would build a new one each time)."""
    columns = _RESERVATIONS.columns
    await session.execute(_INSERT_RESERVATION, {c.key: getattr(reservation, c.key) for c in columns})


_CLOSE_RESERVATION = (
    update(_RESERVATIONS)
    .where(_RESERVATIONS.c.id == bindparam("reservation_id"), _RESERVATIONS.c.status == bindparam("was"))
    .values(status=bindparam("closed_as"), settled_at=bindparam("closed_at"))
    .returning(
        _RESERVATIONS.c.id,
        _RESERVATIONS.c.licence_id,
        _RESERVATIONS.c.analyst_id,
        _RESERVATIONS.c.amounts,
        _RESERVATIONS.c.period_start,
        _RESERVATIONS.c.epsilon_micro,
    )
)


async def close_reservation(
    session: AsyncSession, reservation_id: str, status: str, *, was: str = "open"
) -> Row[Any] | None:
    """open → settled | released | expired, expired → settled, once: a retry finds nothing to do.

    One conditional statement that also answers what the reservation held (``licence_id``,
    ``analyst_id``, ``amounts``, ``period_start``, ``epsilon_micro``), or None if it was not open.
    A Core statement built once: it closes every delivery request.
    """
    params = {"reservation_id": reservation_id, "was": was, "closed_as": status, "closed_at": utcnow()}
    return (await session.execute(_CLOSE_RESERVATION, params)).one_or_none()


async def stale_reservations(session: AsyncSession, now: datetime, limit: int = 500) -> list[Reservation]:
    stmt = (
        select(Reservation)
        .where(Reservation.status == "open", Reservation.expires_at < now)
        .order_by(Reservation.expires_at)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


# --- usage events -----------------------------------------------------------------------------------


@functools.cache
def _events_from_arrays() -> Any:
    """PostgreSQL: ``INSERT … SELECT * FROM unnest(<one array per column>) ON CONFLICT DO NOTHING
    RETURNING``: the same text and prepared statement for every batch size, one parameter a column.

    Built on first use, not at import: ``licence_id`` takes its type from ``licences.id`` only once
    that table is in the metadata.
    """
    names = [c.name for c in EVENTS.columns]
    arrays = [bindparam(f"_{c.name}", type_=ARRAY(c.type)) for c in EVENTS.columns]
    source = func.unnest(*arrays).table_valued(*names).render_derived(name="_lode_rows")
    return (
        pg_insert(EVENTS)
        .from_select(names, select(*(source.c[n] for n in names)))
        .on_conflict_do_nothing(index_elements=[EVENTS.c.licence_id, EVENTS.c.idempotency_key])
        .returning(EVENTS.c.licence_id, EVENTS.c.idempotency_key)
    )


@functools.cache
def _pg_events_insert(dialect_class: type) -> tuple[str, list[str]]:
    """The unnest INSERT compiled once with positional parameters, and the column of each."""
    compiled = _events_from_arrays().compile(dialect=dialect_class())
    return compiled.string, [name.removeprefix("_") for name in compiled.positiontup or []]


@functools.cache
def _sqlite_events_insert(dialect_class: type) -> tuple[str, list[tuple[str, Any]]]:
    """The compiled INSERT … ON CONFLICT DO NOTHING with positional parameters, and each column's
    bind processor (None where the driver takes the value as it is)."""
    dialect = dialect_class()
    stmt = sqlite_insert(EVENTS).on_conflict_do_nothing(index_elements=[EVENTS.c.licence_id, EVENTS.c.idempotency_key])
    compiled = stmt.compile(dialect=dialect, column_keys=[c.name for c in EVENTS.columns])
    order = compiled.positiontup or []
    by_name = {c.name: c for c in EVENTS.columns}
    # dialect_impl: the processor SQLAlchemy itself would use. The type's own bind_processor skips
    # SQLite's DATETIME one, so times went in as "…:00+00:00", which sorts wrong against the rest.
    return compiled.string, [(name, by_name[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in order]


async def insert_events(session: AsyncSession, columns: dict[str, list[Any]]) -> set[tuple[str, str]]:
    """One bulk statement per batch (``events.Columns``: each column's values, one per event);
    answers the (licence, key) pairs actually inserted (a key the licence used before is skipped:
    ON CONFLICT DO NOTHING)."""
    n = len(columns["id"])
    if not n:
        return set()
    connection = await session.connection()
    if session.bind.dialect.name == "postgresql":
        # The arrays go to asyncpg as they are (it encodes str, int, bool and aware datetimes
        # natively; every timestamp here is aware UTC): SQLAlchemy's per-element bind processing
        # of two timestamp arrays cost more than the insert itself.
        sql, names = _pg_events_insert(type(session.bind.dialect))
        arrays = tuple(columns[name] for name in names)
        return {(lic, key) for lic, key in (await connection.exec_driver_sql(sql, arrays)).all()}
    # SQLite: one prepared INSERT … ON CONFLICT DO NOTHING run for every row (executemany). Its
    # rowcount says whether every row went in; only when some did not are the fresh ids read back.
    # The rows go to the driver as tuples converted by the columns' own bind processors: the ORM's
    # per-row parameter handling cost more than SQLite's insert at 1,000 rows a batch. Each
    # distinct value is converted once (a batch shares its created_at, its over_cap and often its
    # occurred_at).
    sql, processors = _sqlite_events_insert(type(session.bind.dialect))
    converted = []
    for name, convert in processors:
        column = columns[name]
        if convert is not None:
            done = {value: convert(value) for value in set(column)}
            column = [done[value] for value in column]
        converted.append(column)
    result = await connection.exec_driver_sql(sql, list(zip(*converted, strict=True)))
    pairs = zip(columns["licence_id"], columns["idempotency_key"], strict=True)
    if result.rowcount == n:
        return set(pairs)
    mine = select(EVENTS.c.licence_id, EVENTS.c.idempotency_key).where(EVENTS.c.id.in_(columns["id"]))
    return {(lic, key) for lic, key in (await session.execute(mine)).all()}


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
