"""The local folder: ``<LODE_DATA_DIR>/objects``, one file per key, the embedded default.

A file is streamed to a hidden ``.<name>.<random>.part`` beside its place and linked there only once
it is complete, so a reader never sees half a file, a failed write leaves nothing behind, and a
name that exists is never replaced (``link(2)`` refuses it: see the package's docstring).
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import secrets
import shutil
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from catalog.objectstore import CHUNK, ObjectExists, Stored, StoreUnavailable, check_key


class LocalStore:
    remote = False
    filesystem = None

    def __init__(self, root: Path) -> None:
        self.path_root = Path(root).resolve()
        self.root = str(self.path_root)
        self.path_root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        """The file a key names; ValueError for anything that could land outside the folder (a
        symbolic link included)."""
        check_key(key, directory=True)
        resolved = (self.path_root / key).resolve()
        if resolved == self.path_root or not resolved.is_relative_to(self.path_root):
            raise ValueError(f"storage key escapes the store: {key!r}")
        return resolved

    def location(self, key: str) -> str:
        return str(self.path(key)) + (os.sep if key.endswith("/") else "")

    def create(self, key: str) -> _LocalUpload:
        return _LocalUpload(self.path(key))

    async def put_file(self, key: str, path: Path) -> Stored:
        target = self.path(key)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        return await asyncio.to_thread(_adopt, Path(path), target)

    async def open(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        handle = await asyncio.to_thread(self.path(key).open, "rb")
        return _chunks(handle, start, end)

    async def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    async def keys(self, prefix: str) -> list[str]:
        base = self.path(prefix) if prefix else self.path_root
        if not base.is_dir():
            return []
        found = await asyncio.to_thread(lambda: [p for p in base.rglob("*") if p.is_file()])
        return sorted(p.relative_to(self.path_root).as_posix() for p in found)

    async def ready(self) -> None:
        try:
            await asyncio.to_thread(_probe, self.path_root)
        except OSError as exc:
            raise StoreUnavailable(
                f"The storage folder cannot be written: {exc.strerror or exc}.", code="storage_unavailable"
            ) from None

    def close(self) -> None:
        pass


class _LocalUpload:
    def __init__(self, target: Path) -> None:
        self.target = target
        self.incoming = target.with_name(f".{target.name}.{secrets.token_hex(8)}.part")
        self._handle: Any = None
        self._digest = hashlib.sha256()
        self._size = 0
        # The link, a future of its own: cancelling the request does not stop its thread, so ``abort``
        # waits for it and then removes the name it may have made.
        self._linking: asyncio.Future[None] | None = None

    async def write(self, chunk: bytes) -> None:
        if self._handle is None:
            await asyncio.to_thread(self._open)
        # Off the event loop: a slow disk must not stall every other request.
        await asyncio.to_thread(self._append, chunk)

    def _open(self) -> None:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.incoming.open("xb")

    def _append(self, chunk: bytes) -> None:
        self._handle.write(chunk)
        self._digest.update(chunk)
        self._size += len(chunk)

    async def commit(self) -> Stored:
        if self._handle is None:
            await asyncio.to_thread(self._open)
        self._handle.close()
        self._linking = asyncio.ensure_future(asyncio.to_thread(_link, self.incoming, self.target))
        await asyncio.shield(self._linking)
        self.incoming.unlink(missing_ok=True)
        return Stored(self._digest.hexdigest(), self._size)

    async def abort(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._linking is not None:
            await asyncio.wait([self._linking])
            # A link refused (ObjectExists) left the name to whoever made it.
            if not self._linking.cancelled() and self._linking.exception() is None:
                self.target.unlink(missing_ok=True)
        self.incoming.unlink(missing_ok=True)


async def _chunks(handle: Any, start: int, end: int) -> AsyncGenerator[bytes, None]:
    with handle:
        handle.seek(start)
        left = end - start + 1
        while left > 0:
            # Off the event loop: a cold disk read must not stall every other request.
            chunk = await asyncio.to_thread(handle.read, min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk


def _link(source: Path, target: Path) -> None:
    """``source`` (beside ``target``) also named ``target``, which must not exist yet (ObjectExists)."""
    try:
        os.link(source, target)
    except FileExistsError:
        raise ObjectExists(target.name) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
        # A folder without hard links: claim the name exclusively, then move the file onto it.
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            raise ObjectExists(target.name) from None
        os.replace(source, target)


def _adopt(source: Path, target: Path) -> Stored:
    """A finished local file stored as ``target``: linked, not copied, where the folder allows it."""
    with source.open("rb") as handle:
        sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    try:
        _link(source, target)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        beside = target.with_name(f".{target.name}.{secrets.token_hex(8)}.part")
        try:
            shutil.copyfile(source, beside)
            _link(beside, target)
        finally:
            beside.unlink(missing_ok=True)
    return Stored(sha256, target.stat().st_size)


def _probe(root: Path) -> None:
    probe = root / f".ready-{secrets.token_hex(6)}"
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    probe.unlink()
