"""Durable events written in the same transaction as the change that caused them.

``emit`` adds a row to the caller's transaction, so an event exists if and only if its change was
committed. The worker (``catalog/worker.py``) delivers each to the handler registered under its
name in ``app.py`` at least once: it claims a batch under a lease (``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so several ``lode worker`` processes share the work), runs each handler, and marks it
delivered. The lease is short (``LODE_WORKER_LEASE_S``, 10 s by default) and the worker renews it
while the batch is in hand, so a worker killed mid-handler holds its events for at most one lease:
another worker then claims them and delivers them again. Handlers are therefore idempotent (their
effects carry deterministic keys). Every mark is conditional on the claim's ``lock_token``, so only
the worker holding the lease marks an event, however late a stalled one wakes up. Failures back off
exponentially and an event that keeps failing is parked as ``dead`` and logged.

Periodic jobs live here too: one row per job whose ``next_run_at`` moves by conditional updates,
so exactly one worker runs each due job. While a run is in hand its ``next_run_at`` is the end of
that run's lease, renewed like an event's; the finished run sets it one interval after its start.
A run whose worker died is due again when its lease lapses, not an interval later.
"""

from __future__ import annotations

import logging
import random
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import msgspec
from sqlalchemy import Index, Integer, String, Text, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from catalog.db import Base, CreatedMixin, IdMixin, utcnow, write_transaction
from catalog.ids import new_id

log = logging.getLogger("lode.outbox")

MAX_ATTEMPTS = 25
LEASE = timedelta(seconds=30)  # the default of LODE_WORKER_LEASE_S


class OutboxEvent(IdMixin, CreatedMixin, Base):
    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_due", "status", "available_at"),)

    name: Mapped[str] = mapped_column(String(80))
    payload: Mapped[dict[str, Any]]
    dedupe_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    lock_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]


class PeriodicJob(Base):
    """A job's schedule. ``last_started_at`` doubles as the running claim's token: the claim sets
    it, and only the worker whose start it holds may renew or finish the run."""

    __tablename__ = "periodic_jobs"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    next_run_at: Mapped[datetime]
    last_started_at: Mapped[datetime | None]
    last_finished_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class RetryLater(Exception):
    """A handler's way to say "not yet" (a prerequisite has not arrived): retried, without alarm."""


class JobContext(msgspec.Struct, kw_only=True):
    """What a handler gets: the session factory (handlers open their own short transactions),
    the application's services it may need, and the event being delivered."""

    sessions: async_sessionmaker[AsyncSession]
    services: dict[str, Any]
    event_id: str | None = None
    attempt: int = 0


Handler = Callable[[JobContext, dict[str, Any]], Awaitable[None]]
Job = Callable[[JobContext], Awaitable[None]]


class Registry:
    """Handlers by event name and periodic jobs by name; filled in by the composition root."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.jobs: dict[str, tuple[timedelta, Job]] = {}

    def handler(self, name: str, fn: Handler) -> None:
        if name in self.handlers:
            raise ValueError(f"outbox handler {name!r} registered twice")
        self.handlers[name] = fn

    def every(self, name: str, interval: timedelta, fn: Job) -> None:
        self.jobs[name] = (interval, fn)


def emit(
    session: AsyncSession,
    name: str,
    payload: dict[str, Any],
    *,
    dedupe_key: str | None = None,
    delay: timedelta | None = None,
) -> str:
    """Add an event to the caller's transaction and return its id."""
    event_id = new_id("evt")
    now = utcnow()
    session.add(
        OutboxEvent(
            id=event_id,
            name=name,
            payload=msgspec.to_builtins(payload),
            dedupe_key=dedupe_key,
            available_at=now + delay if delay else now,
            created_at=now,
        )
    )
    return event_id


async def emit_once(session: AsyncSession, name: str, payload: dict[str, Any], *, dedupe_key: str) -> bool:
    """Emit unless an event with this key exists already (in one statement); True if emitted."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    now = utcnow()
    row = {
        "id": new_id("evt"),
        "name": name,
        "payload": msgspec.to_builtins(payload),
        "dedupe_key": dedupe_key,
        "status": "pending",
        "available_at": now,
        "attempts": 0,
        "created_at": now,
    }
    result = await session.execute(insert(OutboxEvent).values(row).on_conflict_do_nothing())
    return bool(result.rowcount)


async def claim(
    sessions: async_sessionmaker[AsyncSession], limit: int = 20, lease: timedelta = LEASE
) -> list[OutboxEvent]:
    """Lease up to ``limit`` due events to this worker under one token, in their own short transaction."""
    now = utcnow()
    token = secrets.token_hex(8)
    async with write_transaction(sessions) as session:
        due = (
            select(OutboxEvent.id)
            .where(
                OutboxEvent.status == "pending",
                OutboxEvent.available_at <= now,
                or_(OutboxEvent.locked_until.is_(None), OutboxEvent.locked_until < now),
            )
            .order_by(OutboxEvent.available_at, OutboxEvent.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        ids = list((await session.execute(due)).scalars())
        if not ids:
            return []
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(ids))
            .values(locked_until=now + lease, lock_token=token, attempts=OutboxEvent.attempts + 1)
            .execution_options(synchronize_session=False)
        )
        rows = (await session.execute(select(OutboxEvent).where(OutboxEvent.id.in_(ids)))).scalars().all()
        return sorted(rows, key=lambda r: (r.available_at, r.id))


async def renew(sessions: async_sessionmaker[AsyncSession], token: str, lease: timedelta) -> set[str]:
    """Extend the lease of every event still held under ``token``; return their ids.

    An event missing from the answer was marked, or was claimed by another worker after this
    one let its lease lapse: it is no longer this worker's to run or to mark.
    """
    now = utcnow()
    async with write_transaction(sessions) as session:
        held = await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.lock_token == token, OutboxEvent.status == "pending")
            .values(locked_until=now + lease)
            .returning(OutboxEvent.id)
            .execution_options(synchronize_session=False)
        )
        return set(held.scalars())


async def mark_delivered(sessions: async_sessionmaker[AsyncSession], event: OutboxEvent) -> None:
    async with write_transaction(sessions) as session:
        marked = await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event.id, OutboxEvent.lock_token == event.lock_token)
            .values(status="delivered", delivered_at=utcnow(), locked_until=None, lock_token=None, last_error=None)
            .execution_options(synchronize_session=False)
        )
    if marked.rowcount == 1:
        # Which worker delivered which event, for tracing one across nodes (every line names its node).
        log.debug(
            "outbox event delivered", extra={"event_id": event.id, "event": event.name, "attempt": event.attempts}
        )


async def mark_failed(sessions: async_sessionmaker[AsyncSession], event: OutboxEvent, error: str) -> str:
    dead = event.attempts >= MAX_ATTEMPTS
    delay = min(2 ** min(event.attempts, 12), 3600) * (0.75 + random.random() / 2)
    async with write_transaction(sessions) as session:
        await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event.id, OutboxEvent.lock_token == event.lock_token)
            .values(
                status="dead" if dead else "pending",
                available_at=utcnow() + timedelta(seconds=delay),
                locked_until=None,
                lock_token=None,  # the batch's renewals no longer hold it back from its retry
                last_error=error[:4000],
            )
            .execution_options(synchronize_session=False)
        )
    return "dead" if dead else "retry"


async def claim_job(sessions: async_sessionmaker[AsyncSession], name: str, lease: timedelta = LEASE) -> datetime | None:
    """The run's start, if this worker won the job's due run (None if not): one conditional update,
    which makes the job due again only when this run's lease lapses."""
    now = utcnow()
    async with write_transaction(sessions) as session:
        moved = await session.execute(
            update(PeriodicJob)
            .where(PeriodicJob.name == name, PeriodicJob.next_run_at <= now)
            .values(next_run_at=now + lease, last_started_at=now)
            .execution_options(synchronize_session=False)
        )
        return now if moved.rowcount == 1 else None


async def renew_job(sessions: async_sessionmaker[AsyncSession], name: str, started: datetime, lease: timedelta) -> bool:
    """Extend the run's lease; False if another worker has started the job since (this run is not ours)."""
    async with write_transaction(sessions) as session:
        moved = await session.execute(
            update(PeriodicJob)
            .where(PeriodicJob.name == name, PeriodicJob.last_started_at == started)
            .values(next_run_at=utcnow() + lease)
            .execution_options(synchronize_session=False)
        )
        return moved.rowcount == 1


async def ensure_jobs(sessions: async_sessionmaker[AsyncSession], names: list[str]) -> None:
    """Create the schedule row of each job not seen before, due at once.

    One insert that skips the rows present: workers starting together, or an older and a newer
    release of Lode side by side during a rollout (the newer with a job the older lacks), each
    create what is missing and none fails on what another created.
    """
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    if not names:
        return
    async with write_transaction(sessions) as session:
        insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
        now = utcnow()
        rows = [{"name": n, "next_run_at": now} for n in names]
        await session.execute(insert(PeriodicJob).values(rows).on_conflict_do_nothing(index_elements=["name"]))


async def finish_job(
    sessions: async_sessionmaker[AsyncSession],
    name: str,
    started: datetime,
    interval: timedelta,
    error: str | None,
) -> bool:
    """Record the run's end and schedule the next one an interval after its start, if the run is still ours."""
    async with write_transaction(sessions) as session:
        moved = await session.execute(
            update(PeriodicJob)
            .where(PeriodicJob.name == name, PeriodicJob.last_started_at == started)
            .values(next_run_at=started + interval, last_finished_at=utcnow(), last_error=error)
            .execution_options(synchronize_session=False)
        )
        return moved.rowcount == 1


async def pending_count(session: AsyncSession) -> int:
    return (
        await session.execute(select(func.count()).select_from(OutboxEvent).where(OutboxEvent.status == "pending"))
    ).scalar_one()
