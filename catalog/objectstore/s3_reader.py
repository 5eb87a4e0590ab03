"""The bucket as DuckDB sees it: a read-only s3fs filesystem whose every failure is marked.

The sandbox registers it on each connection it opens (``catalog/sandbox.py``) and confines it to the
prefix the work needs. It holds the credentials, so no SQL can reach them; it may open objects for
reading and list them, nothing else. A failure of the bucket itself carries ``OUTAGE_MARK``, so the
sandbox can tell a store outage (503) from a file DuckDB read but could not parse (422): both reach
it as a bare ``duckdb.Error``.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import s3fs

from catalog.objectstore import OUTAGE_MARK, store_failed

KNOWN_OBJECTS = 4096  # objects whose metadata the filesystem keeps (a few hundred bytes each)

log = logging.getLogger("lode.objectstore")


def _read_only(*args: Any, **kwargs: Any) -> Any:
    raise PermissionError("DuckDB may only read the object store")


class StoreFailed(OSError):
    """The bucket failed DuckDB's filesystem: unreachable, too slow, refusing, or a server error."""


class ObjectMissing(FileNotFoundError):
    """An object DuckDB was pointed at is not in the bucket.

    Every object DuckDB opens is one Lode wrote and recorded (an upload, a published table), so a
    missing one is not the file's nor the query's fault but a server-side inconsistency (a bucket
    emptied or restored behind Lode's back): it is logged and answered like an outage, 503
    ``storage_unavailable``. A ``FileNotFoundError`` still, so fsspec's ``exists`` answers False.
    """


def _marked(exc: Exception, path: str) -> OSError:
    """``exc`` as the filesystem raises it to DuckDB, with ``OUTAGE_MARK`` (see ``catalog/sandbox.py``)."""
    if store_failed(exc):
        return exc if isinstance(exc, OSError) else StoreFailed(str(exc))
    if isinstance(exc, FileNotFoundError):
        log.warning("an object DuckDB was to read is missing from the bucket: %s", path)
        return ObjectMissing(f"{OUTAGE_MARK}: {path} is missing")
    log.warning("the object store failed DuckDB reading %s: %s", path, type(exc).__name__)
    return StoreFailed(f"{OUTAGE_MARK}: {type(exc).__name__}")


class ReadOnlyS3FileSystem(s3fs.S3FileSystem):
    """The bucket as DuckDB sees it: it may open objects for reading and list them, nothing else.

    An object's metadata is kept once seen (objects never change: see the package's docstring), so
    a query pays no HEAD for a file read before: DuckDB's bridge asks for it four times an open.

    Every failure of the bucket itself carries ``OUTAGE_MARK``, so the sandbox answers 503 for it and
    422 for a file DuckDB could read but not parse (both reach it as a bare ``duckdb.Error``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # s3fs's own retries come on top of botocore's (``config_kwargs``): five of them would hold
        # a query's thread five times as long on a store that does not answer.
        self.retries = 1
        self._known: dict[str, dict[str, Any]] = {}

    async def _info(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        name = self._strip_protocol(path)
        known = self._known.get(name)
        if known is None:
            try:
                known = await super()._info(path, *args, **kwargs)
            except Exception as exc:
                raise _marked(exc, name) from exc
            if known.get("type") != "file":
                return known
            if len(self._known) >= KNOWN_OBJECTS:
                self._known.pop(next(iter(self._known)))
            self._known[name] = known
        return dict(known)

    async def _lsdir(self, path: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super()._lsdir(path, *args, **kwargs)
        except Exception as exc:
            raise _marked(exc, path) from exc

    async def _glob(self, path: str, *args: Any, **kwargs: Any) -> Any:
        found = await super()._glob(path, *args, **kwargs)
        if not found and not any(c in path for c in "*?["):
            # DuckDB globs a plain name first and says "no files found" if nothing matched: the
            # object named is one Lode wrote (see ObjectMissing).
            raise _marked(FileNotFoundError(path), path)
        return found

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode != "rb":
            _read_only()
        try:
            handle = super()._open(path, mode, **kwargs)
        except Exception as exc:
            raise _marked(exc, path) from exc
        # Reads go through the cache's fetcher (a GET, then the body): a failure of either is the bucket's.
        handle.cache.fetcher = _marking(handle.cache.fetcher, path)
        return handle

    # Every writing method DuckDB's fsspec bridge calls (and those they rest on), refused.
    rm = rm_file = rmdir = mv = move = copy = cp_file = mkdir = makedirs = touch = _read_only
    put = put_file = pipe = pipe_file = _read_only


def _marking(fetch: Any, path: str) -> Any:
    @functools.wraps(fetch)
    def fetch_marked(start: int, end: int) -> bytes:
        try:
            return fetch(start, end)
        except Exception as exc:
            raise _marked(exc, path) from exc

    return fetch_marked
