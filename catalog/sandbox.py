"""DuckDB, sandboxed and off the event loop (STYLE rule 16): every piece of DuckDB work Lode does.

Each piece of work gets an in-memory database in a worker thread, with ``threads=1``, the
configured ``memory_limit``, external access off except for one allowed directory, autoloading of
extensions off, and the configuration locked so SQL cannot loosen any of it. The event loop calls
``interrupt()`` at the time limit, or as soon as the request that waits for the work is cancelled.

File work (ingest and publish, ``work``) opens a fresh database each time. Queries (``run_limited``)
borrow one: starting a DuckDB database costs ≈20 ms, several times a typical query, so a database
that finished a query cleanly is kept (``QUERY_DATABASES_IDLE`` of them, the least recently used
closed first) for the next query on the same allowed directory. A borrowed database serves one
query at a time, on a cursor of its own that is closed afterwards, so each query still has its
whole ``memory_limit`` and thread; a database whose query failed or was interrupted is closed,
never lent again. A query that writes a file (a Parquet answer) gets a fresh database instead,
allowed one scratch directory besides, and closed afterwards.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import duckdb

from catalog.errors import Unprocessable

T = TypeVar("T")
Work = Callable[[duckdb.DuckDBPyConnection], T]  # what runs on a sandboxed connection in a worker thread

QUERY_DATABASES_IDLE = 8  # sandboxed databases kept between queries, across allowed directories
# The store's incoming files (.<name>.<16 hex>.part): errors name them as the uploader knows them.
_PART = re.compile(r"^\.(.+)\.[0-9a-f]{16}\.part$")


class _TimedOut(Exception):
    pass


class _Watch:
    """The time limit of one piece of work, kept by the event loop.

    The clock starts when a worker thread has the work's connection (``attach``), not when the work
    was queued: a query waiting for a free thread behind long uploads has not yet used its time.
    ``stop`` (the limit, or the request cancelled) interrupts the connection; the lock keeps it from
    interrupting one that is being closed, and a ``stop`` before ``attach`` refuses to start the work.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout_s: float) -> None:
        self._loop = loop
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._done = False
        self.fired = False

    def attach(self, conn: duckdb.DuckDBPyConnection) -> None:
        """On the worker thread, once the work has its connection: start the clock."""
        with self._lock:
            if self.fired:
                raise _TimedOut
            self._conn = conn
        # Runs on the loop before the work's own result can (both are queued from this thread).
        self._loop.call_soon_threadsafe(self._arm)

    def _arm(self) -> None:
        if not self._done:
            self._timer = self._loop.call_later(self._timeout_s, self.stop)

    def stop(self) -> None:
        with self._lock:
            if not self._done:
                self.fired = True
                if self._conn is not None:
                    self._conn.interrupt()

    def finish(self) -> None:
        """On the worker thread, before the connection closes: no interrupt from here on."""
        with self._lock:
            self._done = True

    def disarm(self) -> None:
        """On the loop, once the work is over (or abandoned)."""
        self._done = True
        if self._timer is not None:
            self._timer.cancel()


class Sandbox:
    def __init__(self, root: Path, *, memory_limit: str, timeout_s: float, work_timeout_s: float) -> None:
        """Work may touch only directories under ``root`` (resolved); ``timeout_s`` limits a query
        (``run_limited``), ``work_timeout_s`` reading or writing a whole file (``work``)."""
        self.root = root
        self.memory_limit = memory_limit
        self.timeout_s = timeout_s
        self.work_timeout_s = work_timeout_s
        # (allowed directory, database) pairs lent to queries one at a time; the oldest is closed first.
        self._idle: deque[tuple[Path, duckdb.DuckDBPyConnection]] = deque()
        self._idle_lock = threading.Lock()

    def open_connection(self, allowed_dir: Path, *more_dirs: Path) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB that can read and write only under ``allowed_dir`` and ``more_dirs``
        (each inside ``root``)."""
        allowed = [Path(d).resolve() for d in (allowed_dir, *more_dirs)]
        outside = [str(d) for d in allowed if not d.is_relative_to(self.root)]
        if outside:
            raise ValueError(f"{', '.join(outside)} is outside the store")
        conn = duckdb.connect(
            ":memory:",
            config={
                "threads": 1,
                "memory_limit": self.memory_limit,
                # DuckDB creates this only when it spills, allows it implicitly, and removes it on
                # close; the default (.tmp in the working directory) would land in the checkout.
                "temp_directory": str(self.root / "tmp" / secrets.token_hex(8)),
                "autoinstall_known_extensions": False,
                "autoload_known_extensions": False,
                "allow_community_extensions": False,
                "allow_persistent_secrets": False,
            },
        )
        try:
            # DuckDB refuses allowed_directories before the database has started, so these are
            # SET after connect, in this order: the allow-list, then the switch, then the lock.
            conn.execute("SET allowed_directories = ?", [[str(d) + os.sep for d in allowed]])
            conn.execute("SET enable_external_access = false")
            conn.execute("SET lock_configuration = true")
        except BaseException:
            conn.close()
            raise
        return conn

    def _borrow(self, allowed: Path) -> duckdb.DuckDBPyConnection:
        """An idle sandboxed database for ``allowed`` (resolved), or a new one."""
        with self._idle_lock:
            for i in range(len(self._idle) - 1, -1, -1):
                if self._idle[i][0] == allowed:
                    database = self._idle[i][1]
                    del self._idle[i]
                    return database
        return self.open_connection(allowed)

    def _give_back(self, allowed: Path, database: duckdb.DuckDBPyConnection) -> None:
        with self._idle_lock:
            self._idle.append((allowed, database))
            evicted = self._idle.popleft()[1] if len(self._idle) > QUERY_DATABASES_IDLE else None
        if evicted is not None:
            evicted.close()

    def close(self) -> None:
        """Close the databases kept for queries (they would also close when the Sandbox is collected)."""
        with self._idle_lock:
            idle, self._idle = list(self._idle), deque()
        for _, database in idle:
            database.close()

    def _call_limited(
        self, fn: Work[T], allowed_dir: Path, watch: _Watch, *, borrow: bool = False, scratch: Path | None = None
    ) -> T:
        allowed = Path(allowed_dir).resolve()
        if borrow:
            database = self._borrow(allowed)
        else:
            database = self.open_connection(allowed, *([scratch] if scratch is not None else []))
        conn = database.cursor() if borrow else database
        clean = False
        try:
            watch.attach(conn)
            result = fn(conn)
            clean = True
            return result
        except duckdb.Error as exc:
            if watch.fired:
                raise _TimedOut from exc
            raise
        finally:
            watch.finish()
            conn.close()
            if borrow:
                if clean and not watch.fired:
                    self._give_back(allowed, database)
                else:
                    database.close()

    async def _limited(
        self, fn: Work[T], allowed_dir: Path, timeout_s: float, *, borrow: bool = False, scratch: Path | None = None
    ) -> T:
        """``fn`` on a worker thread, interrupted by the event loop at the time limit — or at once if
        the request is cancelled, since nobody is left to read the answer."""
        watch = _Watch(asyncio.get_running_loop(), timeout_s)
        try:
            return await asyncio.to_thread(self._call_limited, fn, allowed_dir, watch, borrow=borrow, scratch=scratch)
        except asyncio.CancelledError:
            watch.stop()
            raise
        finally:
            watch.disarm()

    async def run_limited(
        self,
        fn: Work[T],
        *,
        allowed_dir: Path | None = None,
        timeout_s: float | None = None,
        scratch: Path | None = None,
    ) -> T:
        """``fn(conn)`` on a sandboxed connection in a worker thread, interrupted at the time limit.

        ``allowed_dir`` (default: the whole store) is all the connection may touch; pass the
        narrowest directory the work needs. ``conn`` is a cursor of a borrowed database (see the
        module's docstring): ``fn`` must use ``conn`` itself, not a ``conn.cursor()``, which the
        timer's ``interrupt()`` would not reach, and must only read — temporary objects vanish with
        the cursor, but a table or view it created would outlive the query in the database.

        With ``scratch`` (a directory in the store) the work gets a database of its own instead,
        closed afterwards, that may also write under ``scratch`` and create what it likes.
        """
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            return await self._limited(fn, allowed_dir or self.root, limit, borrow=scratch is None, scratch=scratch)
        except _TimedOut:
            raise Unprocessable(
                f"The query took longer than {limit:g} s and was stopped.", code="query_timeout"
            ) from None
        except duckdb.OutOfMemoryException:
            raise Unprocessable(
                f"The query needs more than the {self.memory_limit} a query may use; narrow it with where "
                "conditions, fewer groups or a smaller limit.",
                code="query_too_large",
            ) from None
        except (duckdb.ConversionException, duckdb.InvalidInputException, duckdb.OutOfRangeException) as exc:
            # The query was valid for the dictionary, but a value in the data could not take it.
            raise Unprocessable(
                f"The query could not run on this data: {self.explain(exc)}", code="query_failed"
            ) from exc

    async def work(self, fn: Work[T], allowed_dir: Path, failure: str) -> T:
        """File work under the longer limit; a file DuckDB cannot handle is the uploader's problem to fix."""
        try:
            return await self._limited(fn, allowed_dir, self.work_timeout_s)
        except _TimedOut:
            detail = f"{failure}: it took longer than {self.work_timeout_s:g} s."
            raise Unprocessable(detail, code="unreadable_file") from None
        except duckdb.Error as exc:
            raise Unprocessable(f"{failure}: {self.explain(exc)}", code="unreadable_file") from exc

    def explain(self, exc: duckdb.Error) -> str:
        # DuckDB's first two lines say what went wrong; the rest echoes our SQL or suggests options
        # the uploader cannot set. Files are named as the uploader knows them, not by their place.
        text = " ".join(str(exc).split("\nLINE ", 1)[0].split("\n\n", 1)[0].splitlines()[:2])
        inside = re.compile(re.escape(str(self.root)) + r"[^\s'\"]*")
        return inside.sub(lambda match: _PART.sub(r"\1", Path(match.group(0)).name), text)[:500]
