"""The object store and every piece of DuckDB work that ingest and publish need.

Where things live (keys are posix paths relative to ``root`` = ``<LODE_DATA_DIR>/objects``)::

    releases/<release_id>/uploads/<nonce>-<name>   a provider's file, exactly as uploaded (.csv or .parquet)
    releases/<release_id>/tables/<table>.parquet   written at publish; what delivery reads
    tmp/<random>/                                  DuckDB's spill directory, one per connection

A file is streamed to a hidden ``.<name>.<random>.part`` beside its final place and renamed only
once it is complete and DuckDB has read it, so a reader never sees half a file and a failed upload
leaves nothing behind.

Publish writes each table with the dictionary's columns, cast to their canonical types, plus a
hidden column ``_lode_rkey``: a random 64-bit key per row, drawn once. Cell-key perturbation derives
a cell's noise from the keys of the rows that contribute to it, so the same set of rows must always
carry the same keys: they are stored in the file, never recomputed, and never shown to a consumer.

DuckDB runs sandboxed and off the event loop (STYLE rule 16): an in-memory database per piece of
work, in a worker thread, with ``threads=1``, the configured ``memory_limit``, external access off
except for one allowed directory, autoloading of extensions off, and the configuration locked so
SQL cannot loosen any of it. The event loop calls ``interrupt()`` at the time limit, or as soon as
the request that waits for the work is cancelled.

Ingest and publish open a fresh database for each file. Queries (``run_limited``) borrow one: starting
a DuckDB database costs ≈20 ms, several times a typical query, so a database that finished a query
cleanly is kept (``QUERY_DATABASES_IDLE`` of them, the least recently used closed first) for the
next query on the same allowed directory. A borrowed database serves one query at a time, on a
cursor of its own that is closed afterwards, so each query still has its whole ``memory_limit``
and thread; a database whose query failed or was interrupted is closed, never lent again.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

import duckdb
import msgspec

from catalog.datafiles import CANONICAL_TYPES, FORMATS, IDENTIFIER, ColumnInfo, parse_file_name
from catalog.errors import PayloadTooLarge, Unprocessable

T = TypeVar("T")
Work = Callable[[duckdb.DuckDBPyConnection], T]  # what runs on a sandboxed connection in a worker thread

RECORD_KEY = "_lode_rkey"
QUERY_DATABASES_IDLE = 8  # sandboxed databases kept between queries, across allowed directories

# The sniffer still finds delimiter, quoting and types, but sample_size=-1 makes it look at every
# row (from a sample it may type a column BIGINT and then silently round a later 900000.5), and
# skip=0 stops it from dropping leading lines when a later row is wider than the header.
_READERS = {"csv": "read_csv(?, header = true, skip = 0, sample_size = -1)", "parquet": "read_parquet(?)"}
_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PART = re.compile(r"^\.(.+)\.[0-9a-f]{16}\.part$")


class IngestResult(msgspec.Struct, frozen=True):
    storage_key: str
    table: str
    format: Literal["csv", "parquet"]
    sha256: str
    bytes: int
    rows: int
    columns: list[ColumnInfo]


class PublishedTable(msgspec.Struct, frozen=True):
    table: str
    key: str
    rows: int
    persons: int
    bytes: int
    sha256: str


class TableSpec(msgspec.Struct, frozen=True):
    upload_key: str
    format: str
    dictionary: dict  # one DictionaryTable as a plain dict: table, person_key, fields, …


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


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


class Storage:
    def __init__(
        self, root: Path, *, memory_limit: str = "1GB", timeout_s: float = 30.0, work_timeout_s: float = 600.0
    ) -> None:
        """``timeout_s`` limits a query (``run_limited``); ``work_timeout_s`` reading or writing a whole file."""
        self.root = Path(root).resolve()
        self.memory_limit = memory_limit
        self.timeout_s = timeout_s
        self.work_timeout_s = work_timeout_s
        # (allowed directory, database) pairs lent to queries one at a time; the oldest is closed first.
        self._idle: deque[tuple[Path, duckdb.DuckDBPyConnection]] = deque()
        self._idle_lock = threading.Lock()
        (self.root / "releases").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    # --- keys and paths ---------------------------------------------------------------------------

    def path(self, key: str) -> Path:
        """The file a key names; ValueError for anything that could land outside ``root``."""
        relative = PurePosixPath(key)
        if not key or "\\" in key or "\x00" in key or relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"not a storage key: {key!r}")
        resolved = (self.root / relative).resolve()
        if resolved == self.root or not resolved.is_relative_to(self.root):
            raise ValueError(f"storage key escapes the store: {key!r}")
        return resolved

    def key(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def release_dir(self, release_id: str) -> Path:
        if not _SEGMENT.fullmatch(release_id):
            raise ValueError(f"not a release id: {release_id!r}")
        return self.root / "releases" / release_id

    def table_path(self, release_id: str, table: str) -> Path:
        if not IDENTIFIER.fullmatch(table):
            raise ValueError(f"not a table name: {table!r}")
        return self.release_dir(release_id) / "tables" / f"{table}.parquet"

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    # --- the sandbox ------------------------------------------------------------------------------

    def open_connection(self, allowed_dir: Path) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB that can read and write only under ``allowed_dir`` (inside ``root``)."""
        allowed = Path(allowed_dir).resolve()
        if not allowed.is_relative_to(self.root):
            raise ValueError(f"{allowed} is outside the store")
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
            conn.execute("SET allowed_directories = ?", [[str(allowed) + os.sep]])
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
        """Close the databases kept for queries (they would also close when the Storage is collected)."""
        with self._idle_lock:
            idle, self._idle = list(self._idle), deque()
        for _, database in idle:
            database.close()

    def _call_limited(self, fn: Work[T], allowed_dir: Path, watch: _Watch, *, borrow: bool = False) -> T:
        allowed = Path(allowed_dir).resolve()
        database = self._borrow(allowed) if borrow else self.open_connection(allowed)
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

    async def _limited(self, fn: Work[T], allowed_dir: Path, timeout_s: float, *, borrow: bool = False) -> T:
        """``fn`` on a worker thread, interrupted by the event loop at the time limit — or at once if
        the request is cancelled, since nobody is left to read the answer."""
        watch = _Watch(asyncio.get_running_loop(), timeout_s)
        try:
            return await asyncio.to_thread(self._call_limited, fn, allowed_dir, watch, borrow=borrow)
        except asyncio.CancelledError:
            watch.stop()
            raise
        finally:
            watch.disarm()

    async def run_limited(self, fn: Work[T], *, allowed_dir: Path | None = None, timeout_s: float | None = None) -> T:
        """``fn(conn)`` on a sandboxed connection in a worker thread, interrupted at the time limit.

        ``allowed_dir`` (default: the whole store) is all the connection may touch; pass the
        narrowest directory the work needs. ``conn`` is a cursor of a borrowed database (see the
        module's docstring): ``fn`` must use ``conn`` itself, not a ``conn.cursor()``, which the
        timer's ``interrupt()`` would not reach, and must only read — temporary objects vanish with
        the cursor, but a table or view it created would outlive the query in the database.
        """
        limit = self.timeout_s if timeout_s is None else timeout_s
        try:
            return await self._limited(fn, allowed_dir or self.root, limit, borrow=True)
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
                f"The query could not run on this data: {self._explain(exc)}", code="query_failed"
            ) from exc

    async def _work(self, fn: Work[T], allowed_dir: Path, failure: str) -> T:
        """File work under the longer limit; a file DuckDB cannot handle is the uploader's problem to fix."""
        try:
            return await self._limited(fn, allowed_dir, self.work_timeout_s)
        except _TimedOut:
            detail = f"{failure}: it took longer than {self.work_timeout_s:g} s."
            raise Unprocessable(detail, code="unreadable_file") from None
        except duckdb.Error as exc:
            raise Unprocessable(f"{failure}: {self._explain(exc)}", code="unreadable_file") from exc

    def _explain(self, exc: duckdb.Error) -> str:
        # DuckDB's first two lines say what went wrong; the rest echoes our SQL or suggests options
        # the uploader cannot set. Files are named as the uploader knows them, not by their place.
        text = " ".join(str(exc).split("\nLINE ", 1)[0].split("\n\n", 1)[0].splitlines()[:2])
        inside = re.compile(re.escape(str(self.root)) + r"[^\s'\"]*")
        return inside.sub(lambda match: _PART.sub(r"\1", Path(match.group(0)).name), text)[:500]

    # --- ingest -----------------------------------------------------------------------------------

    async def ingest(self, chunks: AsyncIterator[bytes], *, release_id: str, name: str, max_bytes: int) -> IngestResult:
        """Store an upload as ``uploads/<nonce>-<name>``, with its sha256, size, rows and detected columns.

        Each upload gets its own key, so replacing a draft's file never rewrites bytes that a
        concurrent publish may already have frozen; the caller deletes the superseded key.
        """
        table, fmt = parse_file_name(name)
        release_dir = self.release_dir(release_id)
        uploads = release_dir / "uploads"
        final = uploads / f"{secrets.token_hex(6)}-{name}"
        incoming = uploads / f".{name}.{secrets.token_hex(8)}.part"
        await asyncio.to_thread(uploads.mkdir, parents=True, exist_ok=True)
        try:
            sha256, size = await self._receive(chunks, incoming, max_bytes)
            columns, rows = await self._work(
                partial(_detect, path=incoming, fmt=fmt), release_dir, f"{name} could not be read as {fmt.upper()}"
            )
            await asyncio.to_thread(os.replace, incoming, final)
        except BaseException:
            # Synchronous on purpose: it must run even when the request was cancelled.
            incoming.unlink(missing_ok=True)
            raise
        return IngestResult(
            storage_key=self.key(final), table=table, format=fmt, sha256=sha256, bytes=size, rows=rows, columns=columns
        )

    @staticmethod
    async def _receive(chunks: AsyncIterator[bytes], target: Path, max_bytes: int) -> tuple[str, int]:
        digest = hashlib.sha256()
        size = 0
        blank = True
        handle = await asyncio.to_thread(target.open, "xb")
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(
                        f"The file is larger than the limit of {max_bytes} bytes.", code="file_too_large"
                    )
                # DuckDB reads an empty or blank CSV as one column named column0, so refuse it here.
                blank = blank and not bytes(chunk).strip()
                await asyncio.to_thread(_append, handle, digest, chunk)
        finally:
            handle.close()
        if blank:
            raise Unprocessable("The file is empty.", code="unreadable_file")
        return digest.hexdigest(), size

    # --- publish ----------------------------------------------------------------------------------

    async def publish(self, release_id: str, tables: dict[str, TableSpec]) -> dict[str, PublishedTable]:
        """Write every table's Parquet file; all of them, or (on any failure) none."""
        release_dir = self.release_dir(release_id)
        await asyncio.to_thread((release_dir / "tables").mkdir, parents=True, exist_ok=True)
        published: dict[str, PublishedTable] = {}
        try:
            for table, spec in tables.items():
                target = self.table_path(release_id, table)
                source = self.path(spec.upload_key)
                if not source.is_relative_to(release_dir) or spec.format not in FORMATS:
                    raise ValueError(
                        f"table {table}: {spec.upload_key!r} is not a {spec.format} upload of this release"
                    )
                write = partial(_write_table, source=source, fmt=spec.format, dictionary=spec.dictionary, target=target)
                rows, persons, size, sha256 = await self._work(
                    write, release_dir, f"Table {table} could not be written"
                )
                published[table] = PublishedTable(
                    table=table, key=self.key(target), rows=rows, persons=persons, bytes=size, sha256=sha256
                )
        except BaseException:
            for done in published.values():
                self.path(done.key).unlink(missing_ok=True)
            raise
        return published


# --- work done in a worker thread ---------------------------------------------------------------


def _append(handle: Any, digest: Any, chunk: bytes) -> None:
    handle.write(chunk)
    digest.update(chunk)


def _detect(conn: duckdb.DuckDBPyConnection, *, path: Path, fmt: str) -> tuple[list[ColumnInfo], int]:
    source = _READERS[fmt]
    described = conn.execute(f"DESCRIBE SELECT * FROM {source}", [str(path)]).fetchall()
    (rows,) = conn.execute(f"SELECT count(*) FROM {source}", [str(path)]).fetchone()
    return [ColumnInfo(name=row[0], type=row[1]) for row in described], rows


def _write_table(
    conn: duckdb.DuckDBPyConnection, *, source: Path, fmt: str, dictionary: dict, target: Path
) -> tuple[int, int, int, str]:
    casts = []
    for field in dictionary["fields"]:
        canonical = CANONICAL_TYPES.get(field["type"])
        if canonical is None:
            raise ValueError(f"column {field['name']} has the unknown type {field['type']!r}")
        casts.append(f"CAST({quote(field['name'])} AS {canonical}) AS {quote(field['name'])}")
    # hash() of a random UUID: 64 random bits per row, drawn once here and stored with the row.
    select = f"SELECT {', '.join(casts)}, hash(gen_random_uuid()) AS {quote(RECORD_KEY)} FROM {_READERS[fmt]}"
    incoming = target.with_name(f".{target.name}.{secrets.token_hex(8)}.part")
    try:
        conn.execute(f"COPY ({select}) TO ? (FORMAT parquet)", [str(source), str(incoming)])
        counted = f"SELECT count(*), count(DISTINCT {quote(dictionary['person_key'])}) FROM read_parquet(?)"
        rows, persons = conn.execute(counted, [str(incoming)]).fetchone()
        with incoming.open("rb") as handle:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        size = incoming.stat().st_size
        os.replace(incoming, target)
    finally:
        incoming.unlink(missing_ok=True)
    return rows, persons, size, sha256
