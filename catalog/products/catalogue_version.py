"""Reading the catalogue version (migration 0017) once per public catalogue read, cheaply.

Every cached product or search page is checked against this read (``views.py``), so its cost is
most of what such a read costs. Through the app's pool it costs far more than the statement: on
PostgreSQL a checkout pings the server and a return resets the connection (≈ 0.4–0.6 ms here,
against ≈ 0.03 ms for the query on a connection of its own); on SQLite a pooled statement hops to
the connection's thread and back (≈ 0.15 ms, against ≈ 5 µs for SQLite to answer). So the reader
keeps a connection of its own:

* **SQLite**: a ``sqlite3`` connection used on the event loop's thread. A one-row primary-key read
  in WAL mode never waits for a writer, and with ``busy_timeout`` 0 it never waits at all: should
  SQLite refuse it (a checkpoint or recovery holding the WAL index), the read goes through the pool.
* **PostgreSQL**: one asyncpg connection, opened with the arguments the engine would use and
  terminated when the engine is disposed. It runs one statement at a time, so requests share
  reads: each waits for a read that *began after it arrived* (the one running is never joined),
  and all that arrived while one ran share the next. No request is answered from a read older
  than itself, and under load the database sees one read per round trip rather than per request.

Either falls back to the pool when its own connection fails, and opens a new one on a later read.
"""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog import db
from catalog.products import repository as repo

# Options of SQLAlchemy's asyncpg adapter, not of asyncpg.connect.
_ADAPTER_ONLY = ("prepared_statement_cache_size", "prepared_statement_name_func", "async_creator_fn")


class VersionReader:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite_path = _sqlite_path(engine)
        self._sqlite: sqlite3.Connection | None = None  # both opened at the first read
        self._pg: Any = None
        self._postgres = engine.dialect.name == "postgresql"
        self._next: asyncio.Future[int] | None = None  # the read the next arrivals share
        self._runner: asyncio.Task[None] | None = None
        # Closed with the engine (the app disposes it at shutdown); a later read opens anew.
        event.listen(engine.sync_engine, "engine_disposed", self.close)

    async def read(self) -> int:
        if self._sqlite_path is not None:
            try:
                return repo.catalogue_version_now(self._sqlite or self._open_sqlite(self._sqlite_path))
            except sqlite3.Error:  # refused rather than kept waiting: through the pool, and reopen
                self._close_sqlite()
        elif self._postgres:
            try:
                return await self._shared_read()
            except Exception:  # the connection broke (a restart, a network fault): through the pool
                self._terminate()
        async with db.single_read(self._engine) as conn:
            return await repo.catalogue_version(conn)

    def close(self, *_: Any) -> None:
        self._close_sqlite()
        self._terminate()

    # --- SQLite: on the event loop's thread, never waiting -----------------------------------------

    def _open_sqlite(self, path: str) -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only = 1")
        self._sqlite = conn
        return conn

    def _close_sqlite(self) -> None:
        conn, self._sqlite = self._sqlite, None
        if conn is not None:
            conn.close()

    # --- PostgreSQL: reads shared by the requests that arrived while the previous one ran --------

    async def _shared_read(self) -> int:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if self._runner is None or self._runner.done():
                self._runner = asyncio.create_task(self._run(), name="lode-catalogue-version")
        # Shielded: a request that gives up must not cancel the read the others are waiting for.
        return await asyncio.shield(self._next)

    async def _run(self) -> None:
        while self._next is not None:
            waiting, self._next = self._next, None
            try:
                waiting.set_result(await self._pg_read())
            except Exception as exc:
                waiting.set_exception(exc)
                waiting.exception()  # retrieved here too: every waiter may have given up

    async def _pg_read(self) -> int:
        if self._pg is None or self._pg.is_closed():
            import asyncpg

            args, kwargs = self._engine.dialect.create_connect_args(self._engine.url)
            for name in _ADAPTER_ONLY:
                kwargs.pop(name, None)
            self._pg = await asyncpg.connect(*args, **kwargs)
        return await repo.catalogue_version_pg(self._pg)

    def _terminate(self) -> None:
        connection, self._pg = self._pg, None
        if connection is not None and not connection.is_closed():
            connection.terminate()  # synchronous: the engine's disposal does not wait on it


def _sqlite_path(engine: AsyncEngine) -> str | None:
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:" or path.startswith("file:"):
        return None  # PostgreSQL, or a database another connection cannot open by its name
    return path
