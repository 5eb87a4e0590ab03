"""Release files in the object store, and what ingest and publish do with DuckDB on them.

Where things live (keys are posix paths in the store — ``<LODE_DATA_DIR>/objects``, or under the
bucket's prefix: ``catalog/objectstore/``)::

    releases/<release_id>/uploads/<nonce>-<name>          a provider's file, exactly as uploaded (.csv
                                                          or .parquet)
    releases/<release_id>/tables/<table>-<sha256>.parquet written at publish; what delivery reads

and, always in the local working folder ``<LODE_DATA_DIR>/objects``::

    tmp/<random>/                                  DuckDB's spill directory, one per connection
    tmp/scratch-<random>/                          files DuckDB writes for one request (a publish's
                                                   tables, a Parquet answer), removed before it ends

Every key is written once (``catalog/objectstore/``: an upload's nonce, a table's sha256, and a
conditional create): a published release's files never change. An upload streams to the store with
its sha256 computed on the way, and is removed if it fails or DuckDB cannot read it.

Publish writes each table with the dictionary's columns, cast to their canonical types, plus a
hidden column ``_lode_rkey``: a random 64-bit key per row, drawn once. Cell-key perturbation derives
a cell's noise from the keys of the rows that contribute to it, so the same set of rows must always
carry the same keys: they are stored in the file, never recomputed, and never shown to a consumer.

DuckDB does all of that work sandboxed and off the event loop: see ``catalog/sandbox.py``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import shutil
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

import duckdb
import msgspec

from catalog.datafiles import CANONICAL_TYPES, FORMATS, IDENTIFIER, ColumnInfo, parse_file_name, quote
from catalog.errors import PayloadTooLarge, Unprocessable
from catalog.objectstore import ObjectStore, Stored, Upload, check_key, clean_up
from catalog.objectstore.local import LocalStore
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
        self,
        root: Path,
        *,
        store: ObjectStore | None = None,
        memory_limit: str = "1GB",
        timeout_s: float = 30.0,
        work_timeout_s: float = 600.0,
    ) -> None:
        """``root`` is the local working folder (DuckDB's spill files and scratch directories under
        ``root/tmp``) and, without a ``store``, the local store itself. ``timeout_s`` limits a query
        (``sandbox.run_limited``), ``work_timeout_s`` reading or writing a whole file."""
        self.root = Path(root).resolve()
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)
        self.store: ObjectStore = store if store is not None else LocalStore(self.root)
        self.sandbox = Sandbox(
            self.root, memory_limit=memory_limit, timeout_s=timeout_s, work_timeout_s=work_timeout_s, store=self.store
        )

    # --- keys and places --------------------------------------------------------------------------

    def location(self, key: str) -> str:
        """What DuckDB opens for ``key``: a local path, or an ``s3://`` URL."""
        return self.store.location(key)

    def tables_location(self, release_id: str) -> str:
        """The directory of a release's published tables: all a query on it may read."""
        return self.store.location(f"{release_key(release_id)}/tables/")

    def table_location(self, release_id: str, table: str, tables: dict[str, Any] | None) -> str:
        """Where the release's published ``table`` is, from the release's ``tables`` (its sha256).

        A table published before keys were content-addressed — in the local folder, the only store
        Lode had then — keeps its first name, ``tables/<table>.parquet``; a stat finds it.
        """
        if not IDENTIFIER.fullmatch(table):
            raise ValueError(f"not a table name: {table!r}")
        sha256 = ((tables or {}).get(table) or {}).get("sha256")
        legacy = f"{release_key(release_id)}/tables/{table}.parquet"
        if not sha256:
            return self.store.location(legacy)
        key = table_key(release_id, table, sha256)
        if isinstance(self.store, LocalStore) and not self.store.path(key).is_file():
            key = legacy if self.store.path(legacy).is_file() else key
        return self.store.location(key)

    async def open(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Bytes ``start``..``end`` of a stored file, streamed (ranged reads; never whole in memory)."""
        return await self.store.open(key, start, end)

    async def delete(self, key: str) -> None:
        await self.store.delete(key)

    async def ready(self) -> None:
        """Raise (``StoreUnavailable``, 503) unless the store can be reached and the local working
        folder written: ``/ready`` asks this."""
        await self.store.ready()
        if self.store.remote:
            await LocalStore(self.root / "tmp").ready()

    def close(self) -> None:
        """Close the databases kept for queries and the store's connections."""
        self.sandbox.close()
        self.store.close()

    @contextmanager
    def scratch(self) -> Iterator[Path]:
        """A fresh local directory for files that outlive no request; removed with all it holds."""
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
        concurrent publish may already have frozen; the caller deletes the superseded key. The file
        streams to the store, then DuckDB reads it where it is; a file that fails on the way, or that
        DuckDB cannot read, is removed.
        """
        table, fmt = parse_file_name(name)
        uploads = f"{release_key(release_id)}/uploads/"
        key = f"{uploads}{secrets.token_hex(6)}-{name}"
        upload = self.store.create(key)
        try:
            sha256, size = await _receive(chunks, upload, max_bytes)
            columns, rows = await self.sandbox.work(
                partial(_detect, path=self.store.location(key), fmt=fmt),
                self.store.location(uploads),
                f"{name} could not be read as {fmt.upper()}",
            )
            if any("\x00" in c.name for c in columns):  # PostgreSQL could not store the column list
                raise Unprocessable(f"{name}: a column name holds a NUL character (U+0000).", code="unreadable_file")
        except BaseException:
            await clean_up(upload.abort(), what="remove a failed upload")
            raise
        return IngestResult(
            storage_key=key, table=table, format=fmt, sha256=sha256, bytes=size, rows=rows, columns=columns
        )

    # --- publish ----------------------------------------------------------------------------------

    async def publish(
        self, release_id: str, tables: dict[str, TableSpec], profiler: Profiler | None = None
    ) -> tuple[dict[str, PublishedTable], dict[str, list[dict[str, Any]]]]:
        """Write every table's Parquet file — all of them, or (on any failure) none — running the
        ``profiler`` on each as it is written and then on the release; answers the tables and what
        the release-wide profiling found.

        DuckDB writes each file to a local scratch directory (it reads the upload where it is stored)
        and profiles it there; only once every table and the release passed are the files stored,
        each under its content-addressed key.
        """
        uploads = f"{release_key(release_id)}/uploads/"
        published: dict[str, PublishedTable] = {}
        across: dict[str, list[dict[str, Any]]] = {}
        stored: list[str] = []
        with self.scratch() as scratch:
            written = {table: scratch / f"{table}.parquet" for table in tables}
            try:
                for table, spec in tables.items():
                    check_key(spec.upload_key)
                    if not spec.upload_key.startswith(uploads) or spec.format not in FORMATS:
                        raise ValueError(
                            f"table {table}: {spec.upload_key!r} is not a {spec.format} upload of this release"
                        )
                    write = partial(
                        _write_table,
                        source=self.store.location(spec.upload_key),
                        fmt=spec.format,
                        dictionary=spec.dictionary,
                        target=written[table],
                        profile=profiler.table if profiler else None,
                    )
                    rows, persons, size, sha256, uniqueness, checks = await self.sandbox.work(
                        write, [self.store.location(uploads), scratch], f"Table {table} could not be written"
                    )
                    published[table] = PublishedTable(
                        table=table,
                        key=table_key(release_id, table, sha256),
                        rows=rows,
                        persons=persons,
                        bytes=size,
                        sha256=sha256,
                        uniqueness=uniqueness,
                        quality=checks,
                    )
                if profiler is not None and published:
                    paths = {table: str(written[table]) for table in published}
                    dictionaries = [spec.dictionary for spec in tables.values()]
                    check = partial(profiler.release, paths=paths, tables=dictionaries)
                    across = await self.sandbox.work(check, scratch, "The release could not be profiled")
                for table, done in published.items():
                    kept = await self.store.put_file(done.key, written[table])
                    stored.append(done.key)
                    if kept.sha256 != done.sha256:  # the bytes changed between DuckDB and the store
                        raise OSError(f"table {table}: the stored file's sha256 differs from the one written")
            except BaseException:
                for key in stored:
                    await clean_up(self.store.delete(key), what="remove a failed publish's table")
                raise
        return published, across


def release_key(release_id: str) -> str:
    """Where a release's files live: ``releases/<release_id>``."""
    if not _SEGMENT.fullmatch(release_id):
        raise ValueError(f"not a release id: {release_id!r}")
    return f"releases/{release_id}"


def table_key(release_id: str, table: str, sha256: str) -> str:
    """A published table's key: content-addressed, so a key names one file's bytes for ever."""
    if not IDENTIFIER.fullmatch(table) or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"not a table name and sha256: {table!r}, {sha256!r}")
    return f"{release_key(release_id)}/tables/{table}-{sha256}.parquet"


async def _receive(chunks: AsyncIterator[bytes], upload: Upload, max_bytes: int) -> Stored:
    size = 0
    blank = True
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"The file is larger than the limit of {max_bytes} bytes.", code="file_too_large")
        # DuckDB reads an empty or blank CSV as one column named column0, so refuse it here.
        blank = blank and not bytes(chunk).strip()
        await upload.write(chunk)
    if blank:
        raise Unprocessable("The file is empty.", code="unreadable_file")
    return await upload.commit()


# --- work done in a worker thread ---------------------------------------------------------------


def _detect(conn: duckdb.DuckDBPyConnection, *, path: str, fmt: str) -> tuple[list[ColumnInfo], int]:
    source = _READERS[fmt]
    described = conn.execute(f"DESCRIBE SELECT * FROM {source}", [str(path)]).fetchall()
    (rows,) = conn.execute(f"SELECT count(*) FROM {source}", [str(path)]).fetchone()
    return [ColumnInfo(name=row[0], type=row[1]) for row in described], rows


def _write_table(
    conn: duckdb.DuckDBPyConnection,
    *,
    source: str,
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
    # Ordered by that key: rows page in key order (delivery/paging.py), and with the file sorted each
    # row group's min/max lets a page skip every group before its cursor instead of reading the
    # whole key column (10M rows: ~6 ms a page instead of ~130 ms, for ~7 s more at publish, once).
    select = (
        f"SELECT {', '.join(casts)}, hash(gen_random_uuid()) AS {quote(RECORD_KEY)} FROM {_READERS[fmt]} "
        f"ORDER BY {quote(RECORD_KEY)}"
    )
    conn.execute(f"COPY ({select}) TO ? (FORMAT parquet)", [source, str(target)])
    counted = f"SELECT count(*), count(DISTINCT {quote(dictionary['person_key'])}) FROM read_parquet(?)"
    rows, persons = conn.execute(counted, [str(target)]).fetchone()
    uniqueness = _uniqueness(conn, str(target), dictionary)
    checks = profile(conn, str(target), dictionary) if profile is not None else {}
    with target.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    return rows, persons, target.stat().st_size, sha256, uniqueness, checks


def measure_uniqueness(storage: Storage, release_id: str, location: str, dictionary: dict) -> dict[str, float]:
    """``_uniqueness`` of a stored table, on a sandboxed connection of this thread (for a migration)."""
    conn = storage.sandbox.open_connection(storage.tables_location(release_id))
    try:
        return _uniqueness(conn, location, dictionary)
    finally:
        conn.close()


def _uniqueness(conn: duckdb.DuckDBPyConnection, path: str, dictionary: dict) -> dict[str, float]:
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
    found = conn.execute(" UNION ALL ".join(parts), {"path": path}).fetchall()
    return {columns[i]: round(lone / persons, 4) if persons else 0.0 for i, lone, persons in found}
