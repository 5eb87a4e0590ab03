"""Downloads: streamed to disk, resumable, verified, never half-written under the final name.

The bytes go to ``<dest>.part``; beside it ``<dest>.part.etag`` remembers which version of the
file they belong to. A later call resumes with ``Range: bytes=<size>-`` and ``If-Range: <etag>``:
Lode sends the rest if the file is unchanged, or the whole new file (200), which then replaces
the partial bytes. At the end the SHA-256 of the whole must equal the ETag (Lode's ETag is the
file's SHA-256) before the file is renamed into place; a mismatch deletes the partial file and
raises ``IntegrityError``.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import httpx

from lode_client import errors
from lode_client.transport import Call, decode

CHUNK = 1 << 16


class Target:
    """Where a download lands and what is already there."""

    def __init__(self, dest: Path, name: str) -> None:
        self.final = dest / name if dest.is_dir() else dest
        self.part = self.final.with_name(self.final.name + ".part")
        self.etag_file = self.final.with_name(self.final.name + ".part.etag")

    def resume_headers(self) -> dict[str, str]:
        if self.part.exists() and self.etag_file.exists() and self.part.stat().st_size > 0:
            return {"Range": f"bytes={self.part.stat().st_size}-", "If-Range": self.etag_file.read_text().strip()}
        return {}

    def open(self, response: httpx.Response) -> tuple[Any, Any, int, int]:
        """The file to append to, a hash of what it holds, the bytes already there, the total."""
        etag = response.headers.get("etag", "")
        if response.status_code == 206:
            have = self.part.stat().st_size
            digest = hashlib.sha256()
            with self.part.open("rb") as existing:
                while chunk := existing.read(CHUNK):
                    digest.update(chunk)
            total = int(response.headers["content-range"].rsplit("/", 1)[1])
            return self.part.open("ab"), digest, have, total
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.etag_file.write_text(etag)
        total = int(response.headers.get("content-length") or 0)
        return self.part.open("wb"), hashlib.sha256(), 0, total

    def finish(self, digest: Any, etag: str) -> Path:
        expected = etag.strip().strip('"')
        if digest.hexdigest() != expected:
            self.part.unlink(missing_ok=True)
            self.etag_file.unlink(missing_ok=True)
            raise errors.IntegrityError(
                f"{self.final.name}: SHA-256 {digest.hexdigest()} is not the {expected} Lode announced; "
                "the partial file was removed, download it again."
            )
        self.part.replace(self.final)
        self.etag_file.unlink(missing_ok=True)
        return self.final


def progress_bar(enabled: bool, name: str) -> Any:
    if not enabled:
        return nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    # On stderr: stdout may be a pipe carrying JSON or the data itself.
    columns = ("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn())
    return Progress(*columns, console=Console(stderr=True))


def _check(response: httpx.Response, call: Call) -> None:
    if response.status_code >= 400:
        response.read()
        decode(call, response)  # raises the problem's exception


def _broken(target: Target, exc: Exception) -> errors.TransportError:
    return errors.TransportError(
        f"{target.final.name}: the download broke off ({exc!r}); {target.part} keeps what arrived — "
        "run the download again to resume it."
    )


def download_sync(
    http: httpx.Client, licence_id: str, name: str, dest: Path, *, release: str | None = None, progress: bool = False
) -> Path:
    target = Target(dest, name)
    call = Call("DownloadLicenceFile", {"licence_id": licence_id, "name": name}, {"release": release})
    try:
        with http.stream(
            "GET", call.url, params={"release": release} if release else None, headers=target.resume_headers()
        ) as response:
            _check(response, call)
            out, digest, have, total = target.open(response)
            with out, progress_bar(progress, name) as bar:
                task = bar.add_task(name, total=total, completed=have) if bar else None
                for chunk in response.iter_bytes(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    if bar:
                        bar.advance(task, len(chunk))
    except httpx.TransportError as exc:
        raise _broken(target, exc) from exc
    return target.finish(digest, response.headers.get("etag", ""))


async def download_async(
    http: httpx.AsyncClient,
    licence_id: str,
    name: str,
    dest: Path,
    *,
    release: str | None = None,
    progress: bool = False,
) -> Path:
    target = Target(dest, name)
    call = Call("DownloadLicenceFile", {"licence_id": licence_id, "name": name}, {"release": release})
    try:
        async with http.stream(
            "GET", call.url, params={"release": release} if release else None, headers=target.resume_headers()
        ) as response:
            if response.status_code >= 400:
                await response.aread()
                decode(call, response)
            out, digest, have, total = target.open(response)
            with out, progress_bar(progress, name) as bar:
                task = bar.add_task(name, total=total, completed=have) if bar else None
                async for chunk in response.aiter_bytes(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    if bar:
                        bar.advance(task, len(chunk))
    except httpx.TransportError as exc:
        raise _broken(target, exc) from exc
    return target.finish(digest, response.headers.get("etag", ""))
