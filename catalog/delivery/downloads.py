"""Delivery of files: the list a licence may download, and each download — reserved against the caps
before its first byte, then metered and audited once in the bytes actually sent, however the response
ends (``connection.MeteredStream`` counts them and calls the settlement; ``shielded`` keeps any
cancellation from reaching it). The same gate as every delivery request (``gate.py``) runs first.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from catalog import shielded
from catalog.auth import Principal
from catalog.db import read_transaction, write_transaction
from catalog.delivery import repository as repo
from catalog.delivery.gate import Gate, allow_mode, audit_use, pick_release, usable_licence
from catalog.delivery.schemas import Download, FileEntry, FileList
from catalog.errors import DomainError, NotFound
from catalog.metering import reservations as metering
from catalog.products.models import ReleaseFile
from catalog.storage import Storage

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def range_applies(range_header: str | None, if_range: str | None, sha256: str) -> bool:
    """A ``Range`` is honoured unless ``If-Range`` names another version (ETag) of the file."""
    return range_header is not None and (if_range is None or if_range.strip().strip('"') == sha256)


def byte_range(header: str, size: int) -> tuple[int, int]:
    """One byte range (``bytes=a-b``, ``bytes=a-``, ``bytes=-n``); several ranges are not offered."""
    match = RANGE.match(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        raise DomainError("Only a single byte range is supported.", code="range_not_satisfiable", status=416)
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), int(last) if last else size - 1
    if start > end or start >= size:
        raise DomainError(f"The range is outside the file's {size} bytes.", code="range_not_satisfiable", status=416)
    return start, min(end, size - 1)


class DownloadService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        storage: Storage,
        caller: Principal,
        *,
        timeout_s: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.storage = storage
        self.caller = caller
        self.timeout_s = timeout_s

    async def files(self, licence_id: str) -> FileList:
        async with read_transaction(self.sessions) as session:
            licence, product = await usable_licence(session, self.caller, licence_id)
            allow_mode(product, licence, "download")
            releases = [
                r for r in await repo.covered_releases(session, product.id, licence.ends_on) if r.status == "published"
            ]
            versions = {r.id: r.version for r in releases}
            files = await repo.files_of(session, list(versions))
        return FileList(
            items=[
                FileEntry(
                    name=f.name,
                    release=versions[f.release_id],
                    table=f.table_name,
                    format=f.format,
                    bytes=f.bytes,
                    sha256=f.sha256,
                    rows=f.rows,
                )
                for f in files
            ]
        )

    async def open_download(
        self,
        licence_id: str,
        name: str,
        version: str | None,
        range_header: str | None,
        if_range: str | None = None,
    ) -> tuple[Download, AsyncGenerator[bytes, None], Callable[[int], Awaitable[None]]]:
        """Phase one of a download (the gate, the file, the bytes reserved against the caps): what the
        response says about the file, its bytes, and phase two — ``settle(sent)``, to be awaited
        exactly once when the response has ended however it ended, with the bytes actually sent
        (``connection.MeteredStream`` does both).

        ``If-Range`` (RFC 9110 §13.1.5): a range is served only while the file is still the one
        whose ETag the client names; otherwise the whole file, so a resumed download never splices
        two different files."""
        async with write_transaction(self.sessions) as session:
            licence, product = await usable_licence(session, self.caller, licence_id)
            allow_mode(product, licence, "download")
            release = pick_release(await repo.covered_releases(session, product.id, licence.ends_on), version)
            found = next((f for f in await repo.files_of(session, [release.id]) if f.name == name), None)
            if found is None:
                raise NotFound(f"No file {name} in release {release.version}.")
            if not range_applies(range_header, if_range, found.sha256):
                range_header = None
            start, end = byte_range(range_header, found.bytes) if range_header else (0, found.bytes - 1)
            reservation, counters = await metering.reserve(
                session,
                licence,
                self.caller.user_id,
                "download",
                {"bytes_downloaded": max(0, end - start + 1)},
                timeout_s=max(self.timeout_s, found.bytes / 1_000_000),
            )
            gate = Gate(
                licence=licence,
                product=product,
                release=release,
                mode="download",
                table=None,
                reservation_id=reservation.id,
                counters=counters,
            )
        about = Download(
            name=found.name,
            sha256=found.sha256,
            size=found.bytes,
            media_type="text/csv" if found.format == "csv" else "application/octet-stream",
            start=start,
            end=end,
        )
        try:
            # Opened before the response starts: a store that cannot serve the file answers 503
            # rather than a response cut short. The bytes stream in ranged reads, counted by the
            # response as they are sent.
            chunks = await self.storage.open(found.storage_key, start, end)
        except BaseException:
            await shielded.run(self._give_back(gate), what="give back a download's reservation")
            raise
        settle = partial(self._settle_download, gate, found, (start, end))
        return about, chunks, settle

    async def _give_back(self, gate: Gate) -> None:
        async with write_transaction(self.sessions) as session:
            await metering.release(session, gate.reservation_id, keep_epsilon=False)

    async def _settle_download(self, gate: Gate, found: ReleaseFile, span: tuple[int, int], sent: int) -> None:
        """Phase two: the bytes sent metered and audited, the rest of the reservation given back —
        once (a second call finds the reservation closed), and shielded from any cancellation."""
        await shielded.run(self._record_download(gate, found, span, sent), what="settle a download")

    async def _record_download(self, gate: Gate, found: ReleaseFile, span: tuple[int, int], sent: int) -> None:
        start, end = span
        async with write_transaction(self.sessions) as session:
            used = {"bytes_downloaded": sent, "queries": 0}
            if not await metering.settle(
                session, gate.reservation_id, used, licence=gate.licence, counters=gate.counters
            ):
                return
            audit_use(
                session,
                self.caller,
                gate,
                "licence.downloaded",
                {
                    "release": gate.release.version,
                    "file": found.name,
                    "bytes": sent,
                    "sha256": found.sha256,
                    "range": [start, end],
                    "complete": sent == end - start + 1,
                },
            )
