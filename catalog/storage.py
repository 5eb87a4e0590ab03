"""The object store, and what ingest and publish do with DuckDB in it.

Where things live (keys are posix paths relative to ``root`` = ``<LODE_DATA_DIR>/objects``)::

    releases/<release_id>/uploads/<nonce>-<name>   a provider's file, exactly as uploaded (.csv or .parquet)
    releases/<release_id>/tables/<table>.parquet   written at publish; what delivery reads
    tmp/<random>/                                  DuckDB's spill directory, one per connection
    tmp/scratch-<random>/                          a file DuckDB writes for one request (a Parquet
                                                   answer), read back and removed before it ends

A file is streamed to a hidden ``.<name>.<random>.part`` beside its final place and renamed only
once it is complete and DuckDB has read it, so a reader never sees half a file and a failed upload
leaves nothing behind.

Publish writes each table with the dictionary's columns, cast to their canonical types, plus a
hidden column ``_lode_rkey``: a random 64-bit key per row, drawn once. Cell-key perturbation derives
a cell's noise from the keys of the rows that contribute to it, so the same set of rows must always
carry the same keys: they are stored in the file, never recomputed, and never shown to a consumer.

DuckDB does all of that work sandboxed and off the event loop: see ``catalog/sandbox.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NamedTuple

import duckdb
import msgspec

from catalog.datafiles import CANONICAL_TYPES, FORMATS, IDENTIFIER, ColumnInfo, parse_file_name, quote
from catalog.errors import PayloadTooLarge, Unprocessable
from catalog.sandbox import Sandbox

RECORD_KEY = "_lode_rkey"

# The sniffer still finds delimiter, quoting and types, but sample_size=-1 makes it look at every
# row (from a sample it may type a column BIGINT and then silently round a later 900000.5), and
# skip=0 stops it from dropping leading lines when a later row is wider than the header.
_READERS = {"csv": "read_csv(?, header = true, skip = 0, sample_size = -1)", "parquet": "read_parquet(?)"}
_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")


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
    # Per column: the share of the persons with a value that hold a value no one else holds. The
    # grade policy decides from it which columns isolate persons (anonymised grades refuse to filter
    # or group by those).
    uniqueness: dict[str, float] = {}
    quality: dict[str, Any] = {}  # the table's checks (products/quality.py), when profiled


class TableSpec(msgspec.Struct, frozen=True):
    upload_key: str
    format: str
    dictionary: dict  # one DictionaryTable as a plain dict: table, person_key, fields, …


class Profiler(NamedTuple):
    """Work run on each table just written, on the same sandboxed connection (``table(conn, path,
    dictionary)``), then on all of them (``release(conn, paths, dictionaries)``): the caller's, so
    storage knows nothing of what is measured (products/quality.py's report)."""

    table: Callable[..., dict[str, Any]]
    release: Callable[..., dict[str, list[dict[str, Any]]]]


class Storage:
    def __init__(
        self, root: Path, *, memory_limit: str = "1GB", timeout_s: float = 30.0, work_timeout_s: float = 600.0
    ) -> None:
        """``timeout_s`` limits a query (``sandbox.run_limited``), ``work_timeout_s`` reading or writing
        a whole file."""
        self.root = Path(root).resolve()
        self.sandbox = Sandbox(self.root, memory_limit=memory_limit, timeout_s=timeout_s, work_timeout_s=work_timeout_s)
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

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A fresh directory for files that outlive no request; removed with all it holds."""
        directory = self.root / "tmp" / f"scratch-{secrets.token_hex(8)}"
        directory.mkdir()
        try:
            yield directory
        finally:
            # Synchronous on purpose: it must run even when the request was cancelled.
            shutil.rmtree(directory, ignore_errors=True)

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
            columns, rows = await self.sandbox.work(
                partial(_detect, path=incoming, fmt=fmt), release_dir, f"{name} could not be read as {fmt.upper()}"
            )
            if any("\x00" in c.name for c in columns):  # PostgreSQL could not store the column list
                raise Unprocessable(f"{name}: a column name holds a NUL character (U+0000).", code="unreadable_file")
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

    async def publish(
        self, release_id: str, tables: dict[str, TableSpec], profiler: Profiler | None = None
    ) -> tuple[dict[str, PublishedTable], dict[str, list[dict[str, Any]]]]:
        """Write every table's Parquet file — all of them, or (on any failure) none — running the
        ``profiler`` on each as it is written and then on the release; answers the tables and what
        the release-wide profiling found."""
        release_dir = self.release_dir(release_id)
        await asyncio.to_thread((release_dir / "tables").mkdir, parents=True, exist_ok=True)
        published: dict[str, PublishedTable] = {}
        across: dict[str, list[dict[str, Any]]] = {}
        try:
            for table, spec in tables.items():
                target = self.table_path(release_id, table)
                source = self.path(spec.upload_key)
                if not source.is_relative_to(release_dir) or spec.format not in FORMATS:
                    raise ValueError(
                        f"table {table}: {spec.upload_key!r} is not a {spec.format} upload of this release"
                    )
                write = partial(
                    _write_table,
                    source=source,
                    fmt=spec.format,
                    dictionary=spec.dictionary,
                    target=target,
                    profile=profiler.table if profiler else None,
                )
                rows, persons, size, sha256, uniqueness, checks = await self.sandbox.work(
                    write, release_dir, f"Table {table} could not be written"
                )
                published[table] = PublishedTable(
                    table=table,
                    key=self.key(target),
                    rows=rows,
                    persons=persons,
                    bytes=size,
                    sha256=sha256,
                    uniqueness=uniqueness,
                    quality=checks,
                )
            if profiler is not None and published:
                paths = {table: str(self.path(done.key)) for table, done in published.items()}
                dictionaries = [spec.dictionary for spec in tables.values()]
                check = partial(profiler.release, paths=paths, tables=dictionaries)
                across = await self.sandbox.work(check, release_dir, "The release could not be profiled")
        except BaseException:
            for done in published.values():
                self.path(done.key).unlink(missing_ok=True)
            raise
        return published, across


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
    conn: duckdb.DuckDBPyConnection,
    *,
    source: Path,
    fmt: str,
    dictionary: dict,
    target: Path,
    profile: Callable[..., dict[str, Any]] | None = None,
) -> tuple[int, int, int, str, dict[str, float], dict[str, Any]]:
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
        uniqueness = _uniqueness(conn, incoming, dictionary)
        checks = profile(conn, str(incoming), dictionary) if profile is not None else {}
        with incoming.open("rb") as handle:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
        size = incoming.stat().st_size
        os.replace(incoming, target)
    finally:
        incoming.unlink(missing_ok=True)
    return rows, persons, size, sha256, uniqueness, checks


def measure_uniqueness(storage: Storage, release_id: str, path: Path, dictionary: dict) -> dict[str, float]:
    """``_uniqueness`` of a stored table, on a sandboxed connection of this thread (for a migration)."""
    conn = storage.sandbox.open_connection(storage.release_dir(release_id))
    try:
        return _uniqueness(conn, path, dictionary)
    finally:
        conn.close()


def _uniqueness(conn: duckdb.DuckDBPyConnection, path: Path, dictionary: dict) -> dict[str, float]:
    """For each column but the person key: lone values (held by one person) over persons with a value."""
    person = quote(dictionary["person_key"])
    columns = [f["name"] for f in dictionary["fields"] if f["name"] != dictionary["person_key"]]
    if not columns:
        return {}
    parts = [
        f"SELECT {i} AS c, (SELECT count(*) FROM (SELECT {quote(c)} FROM read_parquet($path) "
        f"WHERE {quote(c)} IS NOT NULL GROUP BY {quote(c)} HAVING count(DISTINCT {person}) = 1)) AS lone, "
        f"(SELECT count(DISTINCT {person}) FROM read_parquet($path) WHERE {quote(c)} IS NOT NULL) AS persons"
        for i, c in enumerate(columns)
    ]
    found = conn.execute(" UNION ALL ".join(parts), {"path": str(path)}).fetchall()
    return {columns[i]: round(lone / persons, 4) if persons else 0.0 for i, lone, persons in found}
