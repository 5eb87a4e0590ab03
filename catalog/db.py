"""Base model, naming convention, UTC timestamps, the engine, sessions and the request transaction.

Transactions follow STYLE rules 3 and 4:

* The request owns its transaction: ``provide_transaction`` yields the session to the handler and
  commits after the handler has built its response but before anything is sent, so a failed commit
  becomes an error response (mapped in ``errors.py``) instead of a 2xx that lies.
* On SQLite, write transactions start with ``BEGIN IMMEDIATE`` — the driver's own transaction
  handling is switched off and a ``begin`` event emits the statement — so two requests that read
  then write cannot both pass a check and silently overwrite each other. Reads stay ``DEFERRED``.
  Whether a session writes is an execution option (``lode_write``) set when it first connects.

Nothing waits on the network while holding a database connection: a request or handler that
calls Stripe (``billing/gateway.py``) does it between short transactions of its own, and the
gateway checks (``ensure_no_connection_held``) that the calling task has no pooled connection
checked out — on SQLite that connection could hold the one write lock, on PostgreSQL row locks
and a slot of the pool. A request that finds every pooled connection busy for
``LODE_DB_POOL_TIMEOUT_S`` answers 503 ``database_busy`` with ``Retry-After`` (``errors.py``).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any

from advanced_alchemy.types import DateTimeUTC
from litestar import Request
from litestar.di import NamedDependency
from sqlalchemy import JSON, Date, MetaData, String, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from catalog import sqlite_driver
from catalog.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite. advanced-alchemy's JsonB would do,
# but it relies on a SQLAlchemy helper that 2.1 removed.
JsonB = JSON().with_variant(JSONB(), "postgresql")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SQLITE_BUSY_TIMEOUT_MS = 10_000


def utcnow() -> datetime:
    """Aware UTC with microseconds, always set in Python (never the database's clock)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: DateTimeUTC(),
        date: Date(),
        dict[str, Any]: JsonB,
        list[Any]: JsonB,
        list[str]: JsonB,
    }


class IdMixin:
    id: Mapped[str] = mapped_column(String(40), primary_key=True)


class CreatedMixin:
    created_at: Mapped[datetime] = mapped_column(DateTimeUTC(), default=utcnow)


def create_engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    # A third of the connections stay open between uses, the rest are opened under load.
    most = settings.db_max_connections or (15 if settings.is_sqlite else 30)
    kwargs.setdefault("pool_size", max(1, most // 3))
    kwargs.setdefault("max_overflow", max(0, most - kwargs["pool_size"]))
    kwargs.setdefault("pool_timeout", settings.db_pool_timeout_s)
    if settings.is_sqlite:
        # Pooled: a fresh aiosqlite connection is a new thread plus four PRAGMAs, three times a
        # request. An idle pooled connection holds no WAL snapshot (BEGIN is ours, and the pool
        # rolls back on return), so the database file may still be copied or removed between uses.
        kwargs.setdefault("module", sqlite_driver.dbapi)  # one thread hop per statement, not four
        engine = create_async_engine(settings.database_url, **kwargs)
        _configure_sqlite(engine)
    else:
        kwargs.setdefault("pool_pre_ping", True)
        engine = create_async_engine(settings.database_url, **kwargs)
    _track_connections(engine)
    return engine


# The pooled connections each asyncio task has checked out, by connection record.
_HELD: weakref.WeakKeyDictionary[asyncio.Task[Any], set[int]] = weakref.WeakKeyDictionary()


class ConnectionHeldAcrossNetwork(RuntimeError):
    """A programming error: a network call was about to wait while its task held a connection."""


def _track_connections(engine: AsyncEngine) -> None:
    # Pool events run in SQLAlchemy's greenlet inside the task that awaits the connection, so the
    # current task is the one that holds it; a checkin may come from any task (or the collector).
    @event.listens_for(engine.sync_engine, "checkout")
    def on_checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
        task = _current_task()
        if task is not None:
            record.info["lode_task"] = weakref.ref(task)
            _HELD.setdefault(task, set()).add(id(record))

    @event.listens_for(engine.sync_engine, "checkin")
    def on_checkin(_dbapi: Any, record: Any) -> None:
        _release(record)

    @event.listens_for(engine.sync_engine, "detach")
    def on_detach(_dbapi: Any, record: Any) -> None:
        _release(record)


def _release(record: Any) -> None:
    ref = record.info.pop("lode_task", None)
    task = ref() if ref is not None else None
    if task is not None:
        _HELD.get(task, set()).discard(id(record))


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: a synchronous caller (Alembic) holds no task
        return None


def ensure_no_connection_held(what: str) -> None:
    """Refuse to wait on the network (``what``) while this task holds a pooled connection."""
    task = _current_task()
    if task is not None and _HELD.get(task):
        raise ConnectionHeldAcrossNetwork(
            f"{what} was called while this task holds a database connection: commit or close the "
            "transaction first (a short transaction, the call, a short transaction — billing/transfers.py)."
        )


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the driver so on_begin decides DEFERRED or IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        if options.get("lode_single_read"):
            return  # single_read: the one statement is its own transaction
        mode = "IMMEDIATE" if options.get("lode_write") else "DEFERRED"
        conn.exec_driver_sql(f"BEGIN {mode}")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


def mark_write(session: AsyncSession) -> None:
    """The session's transaction, when it starts, is a write transaction (BEGIN IMMEDIATE on SQLite).

    Lazily: a request may first claim its Idempotency-Key in a short transaction of its own, which
    on SQLite must not wait behind a write lock its own request already holds.
    """
    sync = session.sync_session
    sync.execution_options = sync.execution_options.union({"lode_write": True})


@asynccontextmanager
async def write_transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A short transaction of its own (STYLE rule 3's exceptions): committed on exit."""
    async with sessions() as session:
        mark_write(session)
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


@asynccontextmanager
async def read_transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    # Closing (not rolling back) ends the transaction without expiring what was loaded, so the
    # caller can still read those objects afterwards.
    async with sessions() as session:
        try:
            yield session
        finally:
            await session.close()


@asynccontextmanager
async def single_read(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection for one SELECT that needs no transaction around it (the key lookup every
    request makes): the statement reads a consistent snapshot of its own, and BEGIN and ROLLBACK
    would add two round trips to it. On SQLite no BEGIN is sent; on PostgreSQL it runs in
    autocommit. A connection, not a session: the lookup loads no entities, and a session's own
    setup cost more than the SELECT."""
    async with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            yield await conn.execution_options(isolation_level="AUTOCOMMIT")
        else:
            yield await conn.execution_options(lode_single_read=True)


async def provide_transaction(
    db_session: NamedDependency[AsyncSession], request: Request
) -> AsyncIterator[AsyncSession]:
    """The request's transaction: commit after the handler, roll back if it raised.

    Litestar runs this cleanup after the response object is built and before it is sent, and an
    exception raised here goes through the app's exception handlers — so a commit that fails (a
    constraint, a lock timeout, a serialization failure) answers with a problem, not a 2xx.

    The transaction (and its connection) lasts as long as the handler, so a handler that waits on
    the network does not take this dependency: delivery (reserve → work → settle) and billing's
    checkout and payout-account links (prepare → ask Stripe → record, ``billing/checkout.py``) run
    their phases in short transactions of their own instead.
    """
    if request.method not in READ_METHODS:
        mark_write(db_session)
    try:
        yield db_session
    except BaseException:
        await db_session.rollback()
        raise
    try:
        await db_session.commit()
    except BaseException:
        await db_session.rollback()
        raise
