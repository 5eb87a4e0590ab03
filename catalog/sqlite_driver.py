"""SQLite for SQLAlchemy's asyncio engine, one thread hop per statement.

SQLAlchemy's ``aiosqlite`` adapter costs four hops to aiosqlite's thread and back for every
statement — open a cursor, execute, fetch, close — about 0.4 ms here for a statement SQLite itself
answers in 10 µs. A metered query runs twenty-odd statements, so on the embedded default the hops
cost more than the query. This adapter keeps aiosqlite's shape (each connection owns one thread, so
a statement that waits on SQLite's write lock or reads many rows never blocks the event loop) but
makes each statement one call on that thread: execute, read every row, close, and come back with
the rows, ``description``, ``rowcount`` and ``lastrowid``. Commit and rollback are one call each,
and none when no transaction is open.

The SQLAlchemy side reuses the aiosqlite dialect (type handling, DDL, reflection, error mapping);
``create_engine`` passes this module's ``dbapi`` as the dialect's ``module``, so the URL stays
``sqlite+aiosqlite://`` and only the connection underneath changes. Results are always buffered: Lode
never asks for a server-side cursor. The adapter classes follow ``sqlalchemy.connectors.asyncio``,
which SQLAlchemy's own asyncio dialects share from 2.1 on (2.0's aiosqlite dialect has classes of
its own and no ``await_``); pyproject requires 2.1 and stays below 2.2 for that reason, CI runs
``tests/test_sqlite_driver.py`` at that floor too, and it checks the behaviour this relies on.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import sqlite3
import threading
import weakref
from collections import deque
from functools import partial
from typing import Any

import aiosqlite
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi
from sqlalchemy.exc import ArgumentError
from sqlalchemy.util.concurrency import await_


class Connection:
    """A ``sqlite3`` connection that lives on one thread of its own; ``call`` runs work there.

    The thread takes work from a queue and hands each answer straight to the caller's event loop
    (``call_soon_threadsafe``): half the cost of a hop through ``run_in_executor``, whose two
    chained futures cost more than most of our statements.
    """

    _numbers = itertools.count(1)

    def __init__(self, jobs: queue.SimpleQueue[_Job | None], conn: sqlite3.Connection) -> None:
        self._jobs = jobs
        self._conn: sqlite3.Connection | None = conn
        # A connection dropped without close or stop still ends its thread (the sqlite3 connection
        # closes as it is collected), as a collected ThreadPoolExecutor's worker would.
        weakref.finalize(self, jobs.put, None)

    @classmethod
    async def open(cls, database: str, **kwargs: Any) -> Connection:
        # The connection lives on its thread, but its in_transaction flag is read from the loop.
        kwargs["check_same_thread"] = False
        jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # A daemon: a connection nobody closed must not keep the interpreter from exiting, and an
        # interpreter that ends mid-transaction leaves SQLite as a crash would, intact.
        name = f"lode-sqlite-{next(cls._numbers)}"
        threading.Thread(target=_serve, args=(jobs,), name=name, daemon=True).start()
        try:
            conn = await _submit(jobs, partial(sqlite3.connect, database, **kwargs))
        except BaseException:
            jobs.put(None)
            raise
        return cls(jobs, conn)

    def _live(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
        return self._conn

    async def call(self, fn: Any, *args: Any) -> Any:
        conn = self._live()
        return await _submit(self._jobs, fn, conn, *args)

    # Outside a transaction both are no-ops in SQLite, so they skip the hop: the pool rolls back
    # every connection given back to it, and most come back committed.
    async def commit(self) -> None:
        if self._live().in_transaction:
            await self.call(sqlite3.Connection.commit)

    async def rollback(self) -> None:
        if self._live().in_transaction:
            await self.call(sqlite3.Connection.rollback)

    async def close(self) -> None:
        if self._conn is None:
            return
        try:
            await self.call(sqlite3.Connection.close)
        finally:
            self._conn = None
            self._jobs.put(None)

    def stop(self) -> None:
        """Close without waiting (garbage collection, or a connection SQLAlchemy has given up on)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        self._jobs.put((None, None, conn.close, ()))  # after any statement still running on the thread
        self._jobs.put(None)


# (the caller's loop and future — None for work nobody waits for — the function, its arguments)
_Job = tuple[asyncio.AbstractEventLoop | None, "asyncio.Future[Any] | None", Any, tuple[Any, ...]]


def _submit(jobs: queue.SimpleQueue[_Job | None], fn: Any, *args: Any) -> asyncio.Future[Any]:
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    jobs.put((loop, future, fn, args))
    return future


def _serve(jobs: queue.SimpleQueue[_Job | None]) -> None:
    """The connection's thread: run each job in turn until told to stop (None)."""
    while (job := jobs.get()) is not None:
        _do(*job)
        # Nothing of a finished job (its parameters, its rows, the caller's loop) may outlive it
        # while the thread waits, perhaps for a long time, in the pool.
        del job


def _do(loop: asyncio.AbstractEventLoop | None, future: asyncio.Future[Any] | None, fn: Any, args: Any) -> None:
    try:
        result, error = fn(*args), None
    except BaseException as exc:  # handed to the caller, who re-raises it
        result, error = None, exc
    if loop is None or future is None:
        return
    try:
        loop.call_soon_threadsafe(_resolve, future, result, error)
    except RuntimeError:  # the loop has closed: nobody is left to tell
        pass


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    # A caller cancelled while its job waited or ran: the job ran anyway, and its answer is dropped.
    # (SQLAlchemy then stops the connection, which queues the close behind it.)
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _run(conn: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> tuple[Any, list[Any], int, Any]:
    """On the connection's thread: the whole statement, its rows read and its cursor closed."""
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        # rowcount after the fetch: for INSERT … RETURNING sqlite3 counts rows as they are read.
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class Cursor:
    """The DBAPI cursor SQLAlchemy drives: one hop per execute, rows buffered on this side."""

    server_side = False
    arraysize = 1

    def __init__(self, adapted: AdaptedConnection) -> None:
        self._adapted = adapted
        self._rows: deque[Any] = deque()
        self.description: Any = None
        self.rowcount = -1
        self.lastrowid: Any = None

    def _call(self, operation: str, parameters: Any, many: bool) -> None:
        try:
            result = await_(self._adapted._connection.call(_run, operation, parameters, many))
        except Exception as error:
            self._adapted._handle_exception(error)
        self.description, rows, self.rowcount, self.lastrowid = result
        self._rows = deque(rows)

    def execute(self, operation: str, parameters: Any = None) -> None:
        self._call(operation, parameters, False)

    def executemany(self, operation: str, seq_of_parameters: Any) -> None:
        self._call(operation, seq_of_parameters, True)

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = self._rows
        return [rows.popleft() for _ in range(min(self.arraysize if size is None else size, len(rows)))]

    def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self) -> Any:
        while self._rows:
            yield self._rows.popleft()

    def setinputsizes(self, *sizes: Any) -> None:
        pass

    def close(self) -> None:
        self._rows.clear()

    async def _async_soft_close(self) -> None:
        """Nothing is open on the driver's side once execute has returned."""


class AdaptedConnection(AsyncAdapt_dbapi_connection):
    """The DBAPI connection SQLAlchemy pools; ``_connection`` is the threaded ``Connection``."""

    __slots__ = ()
    _connection: Connection  # type: ignore[assignment]

    def cursor(self, server_side: bool = False) -> Cursor:  # type: ignore[override]
        # A server-side cursor (stream(), yield_per) gets the same buffered cursor: the answer is
        # the same, but the whole result is in memory. Lode streams no query results from SQLite.
        return Cursor(self)

    @property
    def isolation_level(self) -> str | None:
        return self._connection._live().isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        def set_level(conn: sqlite3.Connection) -> None:
            conn.isolation_level = value

        try:
            await_(self._connection.call(set_level))
        except Exception as error:
            self._handle_exception(error)

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        try:
            await_(self._connection.call(lambda conn: conn.create_function(*args, **kwargs)))
        except Exception as error:
            self._handle_exception(error)

    def rollback(self) -> None:
        if self._connection._conn is not None:
            super().rollback()

    def commit(self) -> None:
        if self._connection._conn is not None:
            super().commit()

    def close(self) -> None:
        try:
            await_(self._connection.close())
        except Exception as error:
            self._handle_exception(error)

    def terminate(self) -> None:
        self._connection.stop()


class DBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The aiosqlite dialect's module object (exceptions, version, paramstyle), connecting here instead."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)
        self.has_stop = True

    def connect(self, *args: Any, **kwargs: Any) -> AdaptedConnection:  # type: ignore[override]
        if kwargs.pop("async_creator_fn", None) is not None:
            # async_creator hands over aiosqlite connections; this adapter must own its connection's thread.
            raise ArgumentError("Lode's SQLite engine opens its own connections: pass no async_creator.")
        return AdaptedConnection(self, await_(Connection.open(*args, **kwargs)))


dbapi = DBAPI()
