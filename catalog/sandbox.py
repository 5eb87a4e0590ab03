"""DuckDB, sandboxed and off the event loop (STYLE rule 16): every piece of DuckDB work Lode does.

Each piece of work gets an in-memory database in a worker thread, with ``threads=1``, the
configured ``memory_limit``, external access off except for the directories it is allowed,
autoloading of extensions off, and the configuration locked so SQL cannot loosen any of it. The
event loop calls ``interrupt()`` at the time limit, or as soon as the request that waits for the
work is cancelled.

An allowed directory is a local one under ``root`` or, when the store is a bucket, a prefix in it
(``s3://bucket/prefix/releases/<id>/tables/``): the store's read-only fsspec filesystem is
registered on every connection before the configuration is locked, and the credentials stay in that
Python object (``catalog/objectstore/s3.py``). Spill files always go to the local ``root/tmp``.

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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import duckdb

from catalog.errors import Unprocessable
from catalog.objectstore import StoreUnavailable, store_failed

if TYPE_CHECKING:
    from catalog.objectstore import ObjectStore

T = TypeVar("T")
Work = Callable[[duckdb.DuckDBPyConnection], T]  # what runs on a sandboxed connection in a worker thread
Place = str | os.PathLike[str]  # a local directory, or a prefix in the store's bucket

# How long after its interrupt a piece of work may keep its caller waiting. DuckDB stops within
# milliseconds of ``interrupt()`` while it computes, but not while its thread is inside the store's
# Python filesystem waiting on a bucket that does not answer (until botocore's read timeout, per
# request): the caller gets its answer now, and the thread closes its database when it comes back.
ABANDON_AFTER_S = 3.0
QUERY_DATABASES_IDLE = 8  # sandboxed databases kept between queries, across allowed directories
# Errors name the store's files as the uploader knows them: not an incoming ``.<name>.<16 hex>.part``,
# an upload's ``<12 hex>-<name>`` or a published ``<table>-<sha256>.parquet``, and never by place.
_SHOWN = (
    (re.compile(r"^\.(.+)\.[0-9a-f]{16}\.part$"), r"\1"),
    (re.compile(r"^[0-9a-f]{12}-(.+)$"), r"\1"),
    (re.compile(r"^(.+)-[0-9a-f]{64}\.parquet$"), r"\1.parquet"),
)
_URL = r"(?:s3a?|https?)://"


class _TimedOut(Exception):
    pass


class _Abandoned(_TimedOut):
    """The work's thread did not come back ABANDON_AFTER_S after its interrupt."""


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
        self.abandoned: asyncio.Future[None] = loop.create_future()  # set ABANDON_AFTER_S after the limit

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
            self._timer = self._loop.call_later(self._timeout_s, self._expire)

    def _expire(self) -> None:
        self.stop()
        self._timer = self._loop.call_later(ABANDON_AFTER_S, self._abandon)

    def _abandon(self) -> None:
        if not self.abandoned.done():
            self.abandoned.set_result(None)

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
    def __init__(
        self,
        root: Path,
        *,
        memory_limit: str,
        timeout_s: float,
        work_timeout_s: float,
        store: ObjectStore | None = None,
    ) -> None:
        """Work may touch only directories under ``root`` (resolved) and, if ``store`` is a bucket,
        prefixes in it; ``timeout_s`` limits a query (``run_limited``), ``work_timeout_s`` reading or
        writing a whole file (``work``)."""
        self.root = Path(root).resolve()
        self.memory_limit = memory_limit
        self.timeout_s = timeout_s
        self.work_timeout_s = work_timeout_s
        remote = store is not None and store.remote
        self.remote_root = f"{store.root}/" if remote else None
        self.filesystem = store.filesystem if remote else None
        # (allowed directories, database) pairs lent to queries one at a time; the oldest is closed first.
        self._idle: deque[tuple[tuple[str, ...], duckdb.DuckDBPyConnection]] = deque()
        self._idle_lock = threading.Lock()

    def allowed(self, place: Place) -> str:
        """``place`` as DuckDB's allow-list takes it (ending in a separator), or ValueError if it is
        outside the store."""
        text = os.fspath(place)
        if self.remote_root is not None and re.match(_URL, text):
            directory = text if text.endswith("/") else f"{text}/"
            inner = directory.removeprefix(self.remote_root)
            if inner == directory or any(part in ("", ".", "..") for part in inner.split("/")[:-1]):
                raise ValueError(f"{text} is outside the store")
            return directory
        path = Path(text).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"{text} is outside the store")
        return str(path) + os.sep

    def open_connection(self, allowed_dir: Place, *more_dirs: Place) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB that can read and write only under ``allowed_dir`` and ``more_dirs``
        (each inside ``root``, or a prefix of the store's bucket, where it can only read)."""
        return self._connect(tuple(self.allowed(d) for d in (allowed_dir, *more_dirs)))

    def _connect(self, allowed: tuple[str, ...]) -> duckdb.DuckDBPyConnection:
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
            if self.filesystem is not None:
                conn.register_filesystem(self.filesystem)
            # DuckDB refuses allowed_directories before the database has started, so these are
            # SET after connect, in this order: the allow-list, then the switch, then the lock.
            conn.execute("SET allowed_directories = ?", [list(allowed)])
            conn.execute("SET enable_external_access = false")
            # Work longer than 2 s would otherwise draw a progress bar on the process's stdout,
            # which is the CLI's output (`lode demo` prints JSON there) and a server's log.
            conn.execute("SET enable_progress_bar = false")
            conn.execute("SET lock_configuration = true")
        except BaseException:
            conn.close()
            raise
        return conn

    def _borrow(self, allowed: tuple[str, ...]) -> duckdb.DuckDBPyConnection:
        """An idle sandboxed database for ``allowed``, or a new one."""
        with self._idle_lock:
            for i in range(len(self._idle) - 1, -1, -1):
                if self._idle[i][0] == allowed:
                    database = self._idle[i][1]
                    del self._idle[i]
                    return database
        return self._connect(allowed)

    def _give_back(self, allowed: tuple[str, ...], database: duckdb.DuckDBPyConnection) -> None:
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

    def _call_limited(self, fn: Work[T], places: Sequence[Place], watch: _Watch, *, borrow: bool = False) -> T:
        allowed = tuple(self.allowed(p) for p in places)
        database = self._borrow(allowed) if borrow else self._connect(allowed)
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

    async def _limited(self, fn: Work[T], places: Sequence[Place], timeout_s: float, *, borrow: bool = False) -> T:
        """``fn`` on a worker thread, interrupted by the event loop at the time limit — or at once if
        the request is cancelled, since nobody is left to read the answer."""
        watch = _Watch(asyncio.get_running_loop(), timeout_s)
        running = asyncio.ensure_future(asyncio.to_thread(self._call_limited, fn, places, watch, borrow=borrow))
        try:
            await asyncio.wait([running, watch.abandoned], return_when=asyncio.FIRST_COMPLETED)
            if not running.done():
                running.add_done_callback(_seen)  # it fails when it comes back, with nobody to tell
                raise _Abandoned
            return running.result()
        except asyncio.CancelledError:
            watch.stop()
            running.add_done_callback(_seen)
            raise
        finally:
            watch.disarm()

    async def run_limited(
        self,
        fn: Work[T],
        *,
        allowed_dir: Place | None = None,
        timeout_s: float | None = None,
        scratch: Path | None = None,
    ) -> T:
        """``fn(conn)`` on a sandboxed connection in a worker thread, interrupted at the time limit.

        ``allowed_dir`` (default: the local ``root``) is all the connection may touch; pass the
        narrowest directory the work needs. ``conn`` is a cursor of a borrowed database (see the
        module's docstring): ``fn`` must use ``conn`` itself, not a ``conn.cursor()``, which the
        timer's ``interrupt()`` would not reach, and must only read — temporary objects vanish with
        the cursor, but a table or view it created would outlive the query in the database.

        With ``scratch`` (a directory in the store) the work gets a database of its own instead,
        closed afterwards, that may also write under ``scratch`` and create what it likes.
        """
        limit = self.timeout_s if timeout_s is None else timeout_s
        places = [allowed_dir or self.root, *([scratch] if scratch is not None else [])]
        try:
            return await self._limited(fn, places, limit, borrow=scratch is None)
        except _Abandoned:
            if self.remote_root is None:
                raise Unprocessable(
                    f"The query took longer than {limit:g} s and was stopped.", code="query_timeout"
                ) from None
            raise _outage() from None  # stuck in the bucket's filesystem, not in DuckDB
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
        except duckdb.Error as exc:
            if self.remote_root is None or not _failed_reading(exc):
                raise
            raise _outage() from exc

    async def work(self, fn: Work[T], allowed: Place | Sequence[Place], failure: str) -> T:
        """File work under the longer limit, allowed one place or several; a file DuckDB cannot
        handle is the uploader's problem to fix."""
        places = [allowed] if isinstance(allowed, str | os.PathLike) else list(allowed)
        try:
            return await self._limited(fn, places, self.work_timeout_s)
        except _Abandoned:
            if self.remote_root is not None:
                raise _outage() from None
            raise Unprocessable(
                f"{failure}: it took longer than {self.work_timeout_s:g} s.", code="unreadable_file"
            ) from None
        except _TimedOut:
            detail = f"{failure}: it took longer than {self.work_timeout_s:g} s."
            raise Unprocessable(detail, code="unreadable_file") from None
        except duckdb.Error as exc:
            if self.remote_root is not None and _failed_reading(exc):
                raise _outage() from exc
            raise Unprocessable(f"{failure}: {self.explain(exc)}", code="unreadable_file") from exc

    def explain(self, exc: duckdb.Error) -> str:
        # DuckDB's first two lines say what went wrong; the rest echoes our SQL or suggests options
        # the uploader cannot set. Files are named as the uploader knows them, not by their place.
        text = " ".join(str(exc).split("\nLINE ", 1)[0].split("\n\n", 1)[0].splitlines()[:2])
        inside = re.compile(f"(?:{re.escape(str(self.root))}|{_URL})" + r"[^\s'\"]*")
        return inside.sub(lambda match: _shown(match.group(0)), text)[:500]


def _failed_reading(exc: duckdb.Error) -> bool:
    """Whether the store's filesystem failed DuckDB (it marks its own failures: see
    ``objectstore.OUTAGE_MARK``) — not a file DuckDB could read but not parse, which raises the same
    bare ``duckdb.Error`` (a Parquet footer or Thrift error) and stays the file's problem."""
    return store_failed(exc)


def _seen(running: asyncio.Future[object]) -> None:
    """Work abandoned or cancelled: its result or failure has nobody left to go to."""
    if not running.cancelled():
        running.exception()


def _outage() -> StoreUnavailable:
    """DuckDB failing to read a bucket is the store's outage (503), not the query's nor the file's."""
    return StoreUnavailable("The object store could not be read; try again shortly.")


def _shown(place: str) -> str:
    name = place.rstrip("/\\").rsplit("/", 1)[-1].rsplit(os.sep, 1)[-1]
    for pattern, replacement in _SHOWN:
        name = pattern.sub(replacement, name)
    return name
