"""Where release files live: a local folder (the default) or an S3-compatible bucket, behind one interface.

A key is a relative posix path (``releases/<release_id>/uploads/<nonce>-<name>``; the layout is
``catalog/storage.py``'s); ``location(key)`` is what DuckDB opens for it — a path in the local folder
(``local.py``), or ``s3://bucket/prefix/<key>`` read through ``filesystem`` (``s3.py``). Each store
writes by streaming (``create``: chunks in, the sha256 and size out; nothing is held whole in
memory), reads byte ranges (``open``), deletes, and says whether it can be reached (``ready``).

Immutable writes — write-once keys, not object versioning. Every key Lode writes is new: an upload's
key carries a random nonce, a published table's key its own sha256 (content-addressed, see
``storage.table_key``). And no code path can replace an object: every write is a conditional create
— the local folder links the finished file into its place (``link(2)`` fails if the name exists),
S3 sends ``If-None-Match: *`` with ``PutObject`` and ``CompleteMultipartUpload`` (the store answers
412 if the key exists) — so a second write to a key fails (``ObjectExists``) instead of overwriting.
Versioning would keep old bytes but still let a writer change what a key serves (every read would
then have to pin a version id recorded in the database), it needs bucket configuration an operator
may not control, and deleting a superseded draft upload would leave its versions behind. Write-once
keys ask nothing of the bucket, a published key's bytes are fixed by construction, and the sha256
the database records names them. A draft's superseded upload is still deleted (``delete``); a
published release's objects are never written again.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncGenerator, Coroutine
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from catalog import shielded
from catalog.errors import ServiceUnavailable

if TYPE_CHECKING:
    from catalog.settings import Settings

CHUNK = 256 * 1024  # what a read yields at a time
log = logging.getLogger("lode.objectstore")


class ObjectExists(Exception):
    """A write-once key was written already: nothing was overwritten."""


class StoreUnavailable(ServiceUnavailable):
    code = "storage_unavailable"


# What the store's DuckDB filesystem writes into every failure of its own (the endpoint unreachable or
# timing out, a refusal, an object missing): DuckDB hands a Python exception on as a plain
# ``duckdb.Error`` whose text holds the exception's, exactly as it does a corrupt file's, so the text
# is all the sandbox can tell them apart by. Random per process and never shown to a client (an
# outage's answer is a fixed sentence), so no file's content can carry it into an error.
OUTAGE_MARK = f"lode-store-failure-{secrets.token_hex(12)}"


def store_failed(exc: BaseException) -> bool:
    """Whether ``exc`` (a DuckDB error) came from the store's filesystem rather than the file or the query."""
    return OUTAGE_MARK in str(exc)


class Stored(NamedTuple):
    sha256: str
    size: int


class Upload(Protocol):
    """One object being written: ``write`` chunks in order, then ``commit`` (the object appears whole,
    or ``ObjectExists``) — or ``abort``, which leaves nothing, whether or not the commit happened."""

    async def write(self, chunk: bytes) -> None: ...

    async def commit(self) -> Stored: ...

    async def abort(self) -> None: ...


class ObjectStore(Protocol):
    root: str  # the location of the store itself: a local directory, or s3://bucket/prefix
    remote: bool  # whether DuckDB reads it through ``filesystem`` (and a failure to reach it is an outage)
    filesystem: object | None  # the fsspec filesystem DuckDB registers to read it, if any

    def location(self, key: str) -> str:
        """What DuckDB opens for ``key`` (a key ending in ``/`` names a directory)."""
        ...

    def create(self, key: str) -> Upload: ...

    async def put_file(self, key: str, path: Path) -> Stored:
        """A local file stored under ``key``, write-once like ``create``."""
        ...

    async def open(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """Bytes ``start``..``end`` (inclusive) of ``key``, streamed; fails here, before the first
        chunk, if the object cannot be read."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; nothing happens if it is gone already."""
        ...

    async def keys(self, prefix: str) -> list[str]:
        """The keys under ``prefix``, sorted."""
        ...

    async def ready(self) -> None:
        """Raise ``StoreUnavailable`` unless the store can be reached and written."""
        ...

    def close(self) -> None: ...


def check_key(key: str, *, directory: bool = False) -> str:
    """``key`` itself, or ValueError for anything that is not a plain relative path."""
    relative = PurePosixPath(key)
    bare = key.removesuffix("/") if directory else key
    if (
        not bare
        or "\\" in key
        or "\x00" in key
        or relative.is_absolute()
        or any(part in ("", ".", "..") for part in bare.split("/"))
    ):
        raise ValueError(f"not a storage key: {key!r}")
    return key


async def clean_up(work: Coroutine[Any, Any, Any], *, what: str) -> None:
    """Undo what a failed request left in the store, to its end even if the request was cancelled;
    a failure here is logged, never raised, so the request still fails with its own error (a 413 is
    not turned into a 503 because the store also went away)."""
    try:
        await shielded.run(work, what=what)
    except Exception:
        log.warning("could not %s", what, exc_info=True)


def open_store(settings: Settings) -> ObjectStore:
    """The store the settings name: ``LODE_STORAGE_URL`` empty is ``<LODE_DATA_DIR>/objects``."""
    if not settings.storage_url:
        from catalog.objectstore.local import LocalStore

        return LocalStore(settings.data_dir / "objects")
    # Imported here: the S3 libraries cost a local installation nothing at start-up.
    from catalog.objectstore.s3 import S3Store

    bucket, _, prefix = settings.storage_url.removeprefix("s3://").partition("/")
    return S3Store(
        bucket,
        prefix,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        path_style=settings.s3_path_style,
    )
