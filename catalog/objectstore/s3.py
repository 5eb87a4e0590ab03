"""An S3-compatible bucket — AWS S3, MinIO, Alibaba OSS — named by ``LODE_STORAGE_URL=s3://bucket/prefix``.

Keys keep the local folder's layout under the prefix. Credentials come from botocore's default
chain (the standard AWS environment variables, the shared config and credentials files, a container
or instance role), never from Lode's settings; ``LODE_S3_ENDPOINT_URL``, ``LODE_S3_REGION`` and
``LODE_S3_PATH_STYLE`` say where the store is and how to address it.

Two clients over the same settings. Lode's own code uses botocore's (synchronous, in worker threads):
uploads stream in parts of ``PART_SIZE``, each sent while the next fills (so at most two parts of
an upload are in memory), with the sha256 computed on the way; a smaller object is one
``PutObject``; both creates are conditional (``If-None-Match: *``: see the package's docstring). A
failed or cancelled upload aborts its multipart upload, so it leaves nothing. Downloads are ranged
GETs read a chunk at a time; one whose connection drops mid-way resumes with a GET of the rest.

DuckDB reads the bucket through s3fs's fsspec filesystem (``filesystem``, ``s3_reader.py``), which the sandbox
registers on each connection it opens and then confines to the prefix the work needs
(``allowed_directories``, ``catalog/sandbox.py``). DuckDB's httpfs extension would be the
alternative where it can be installed (it is a download DuckDB makes at run time, which an offline
machine cannot, and no wheel of it exists for DuckDB 2); we do not need it, and it would need the
credentials handed to DuckDB as a secret. A registered filesystem keeps them in this Python object,
out of reach of any SQL: no secret exists for ``duckdb_secrets()`` to list, and no setting holds one.
The filesystem DuckDB gets is read-only: a query cannot write, move or delete an object, even under
the prefix it may read.

Against an endpoint other than AWS (``LODE_S3_ENDPOINT_URL``), checksums are sent only where the
API requires them: since botocore 1.36 the default streams a trailing CRC that several
S3-compatible stores refuse.

Write-once on Alibaba OSS: OSS ignores ``If-None-Match`` and refuses to overwrite only when asked by
its own header, ``x-oss-forbid-overwrite: true``, which is added to every ``PutObject`` and
``CompleteMultipartUpload`` sent to an ``*.aliyuncs.com`` endpoint (and to no other: AWS and MinIO
would sign it and store it as nothing, but it is no business of theirs). A store that honours neither
still gets no overwrite from Lode, because no two writes share a key: an upload's key carries a
random nonce and a published table's its own sha256 (see the package's docstring) — the conditional
write is the second guard, not the only one.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
import socket
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiobotocore.session
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from catalog.objectstore import (
    CHUNK,
    ObjectExists,
    Stored,
    StoreUnavailable,
    check_key,
    clean_up,
)
from catalog.objectstore.s3_reader import ReadOnlyS3FileSystem

PART_SIZE = 8 * 2**20  # S3's smallest part is 5 MiB; 10,000 parts of 8 MiB hold an 80 GB object
# A store that accepts connections but never answers must not hold a request past its limits:
# botocore and s3fs give up on a silent connection after READ_TIMEOUT_S and try once more, so a
# call's thread is stuck at most ~2 × (CONNECT_TIMEOUT_S + READ_TIMEOUT_S); the event loop stops
# waiting for a call that is not an upload's transfer after CALL_TIMEOUT_S whatever its thread does.
# A transfer (a part, a put, a completion) has no overall limit: a slow link is not a dead store,
# and the read timeout still ends one the store stopped answering.
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 15
CALL_TIMEOUT_S = 20.0
_TRANSFERS = {"upload_part", "put_object", "complete_multipart_upload"}
READY_TIMEOUT_S = 2.0  # /ready's own budget (catalog/ops.py)
# How long a proof that Lode's credentials may write (a PutObject and a DeleteObject of an empty
# object under the prefix) stands. Every readiness probe lists; the write is proved once a minute
# per process: a load balancer probes every few seconds, and a PUT per probe per node is paid
# requests and log lines for a permission that does not change between probes, while a minute is
# short enough that read-only credentials keep a fresh node out of rotation (its first probe writes).
WRITE_PROOF_S = 60.0
READY_KEYS = ".ready/"  # under the prefix: where the write proof goes (``keys`` never lists it)
# What DuckDB reads at a time from an object (s3fs's read-ahead block); DuckDB asks for ranges.
READ_BLOCK = 8 * 2**20
_RESUMES = 2  # fresh GETs of the rest of a download after its connection dropped
_STREAM_ERRORS = (ResponseStreamingError, ReadTimeoutError, IncompleteReadError)

log = logging.getLogger("lode.objectstore")


class S3Store:
    remote = True

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str = "",
        region: str = "",
        path_style: bool = False,
        part_size: int = PART_SIZE,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.root = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._base = f"{self.prefix}/" if self.prefix else ""  # what every object's name starts with
        self.part_size = part_size
        self.call_timeout_s = call_timeout_s
        self._probe: asyncio.Task[None] | None = None  # the readiness probe in flight, shared by its callers
        self._written_at = -WRITE_PROOF_S  # when the last write proof succeeded (monotonic)
        checksums = "when_required" if endpoint_url else "when_supported"
        options: dict[str, Any] = {
            "s3": {"addressing_style": "path" if path_style else "auto"},
            "connect_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": READ_TIMEOUT_S,
            "retries": {"mode": "standard", "max_attempts": 2},
            "request_checksum_calculation": checksums,
            "response_checksum_validation": checksums,
        }
        self._client = _botocore().create_client(
            "s3",
            endpoint_url=endpoint_url or None,
            config=Config(region_name=region or None, max_pool_connections=32, **options),
        )
        if _is_oss(endpoint_url):
            for operation in ("PutObject", "CompleteMultipartUpload"):
                self._client.meta.events.register(f"before-sign.s3.{operation}", forbid_overwrite)
        self.filesystem = ReadOnlyS3FileSystem(
            endpoint_url=endpoint_url or None,
            client_kwargs={"region_name": region or None},
            config_kwargs=options,
            default_block_size=READ_BLOCK,
            skip_instance_cache=True,  # one per store: fsspec would otherwise share it between stores
            use_listings_cache=False,  # a listing cached before a key was written would hide it
            session=_aiobotocore(),
        )

    def key(self, key: str) -> str:
        """The object's name in the bucket."""
        return self._base + check_key(key, directory=True)

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.key(key)}"

    def create(self, key: str) -> _S3Upload:
        return _S3Upload(self, self.key(key))

    async def put_file(self, key: str, path: Path) -> Stored:
        upload = self.create(key)
        try:
            handle = await asyncio.to_thread(Path(path).open, "rb")
            with handle:
                while chunk := await asyncio.to_thread(handle.read, self.part_size):
                    await upload.write(chunk)
            return await upload.commit()
        except BaseException:
            await clean_up(upload.abort(), what="abort an upload to the object store")
            raise

    async def open(self, key: str, start: int, end: int) -> AsyncGenerator[bytes, None]:
        name = self.key(key)
        body = await self._get(name, start, end)
        return self._stream(name, body, start, end)

    async def _get(self, name: str, start: int, end: int) -> Any:
        return (await self.call("get_object", Key=name, Range=f"bytes={start}-{end}"))["Body"]

    async def _stream(self, name: str, body: Any, start: int, end: int) -> AsyncGenerator[bytes, None]:
        position, resumed = start, 0
        try:
            while position <= end:
                try:
                    chunk = await asyncio.to_thread(body.read, min(CHUNK, end - position + 1))
                except _STREAM_ERRORS:
                    if resumed == _RESUMES:
                        raise StoreUnavailable("The object store stopped sending the file.") from None
                    resumed += 1
                    body.close()
                    body = await self._get(name, position, end)
                    continue
                if not chunk:
                    raise StoreUnavailable("The object store sent less of the file than it holds.")
                position += len(chunk)
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        await self.call("delete_object", Key=self.key(key))

    async def keys(self, prefix: str) -> list[str]:
        found: list[str] = []
        params: dict[str, Any] = {"Prefix": self.key(prefix) if prefix else self._base}
        while True:
            page = await self.call("list_objects_v2", **params)
            found += [item["Key"] for item in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                break
            params["ContinuationToken"] = page["NextContinuationToken"]
        names = (name.removeprefix(self._base) for name in found)
        return sorted(name for name in names if not name.startswith(READY_KEYS))

    async def ready(self) -> None:
        """Within READY_TIMEOUT_S: a one-key list under the prefix (the endpoint, the bucket and the
        credentials work, with only the permission a policy scoped to the prefix grants anyway), and
        the write proof when the last one is older than WRITE_PROOF_S. Callers that come while a
        probe is in flight wait for that one: a store that does not answer gets one stuck probe,
        not one more thread every time the load balancer asks."""
        loop = asyncio.get_running_loop()
        probe = self._probe
        if probe is None or probe.done() or probe.get_loop() is not loop:
            probe = self._probe = loop.create_task(self._check())
            probe.add_done_callback(_seen)
        try:
            await asyncio.wait_for(asyncio.shield(probe), READY_TIMEOUT_S)
        except TimeoutError:
            raise StoreUnavailable(f"The object store did not answer within {READY_TIMEOUT_S:g} s.") from None

    async def _check(self) -> None:
        await self.call("list_objects_v2", Prefix=self._base, MaxKeys=1)
        if time.monotonic() - self._written_at < WRITE_PROOF_S:
            return
        # Read-only credentials would pass the list while every upload fails.
        key = f"{self._base}{READY_KEYS}{socket.gethostname()}-{secrets.token_hex(6)}"
        await self.call("put_object", Key=key, Body=b"", IfNoneMatch="*")
        await self.call("delete_object", Key=key)
        self._written_at = time.monotonic()

    async def call(self, operation: str, **params: Any) -> Any:
        """One S3 operation on the bucket, in a worker thread; an outage or a refusal of Lode's
        credentials is ``StoreUnavailable`` (503), a key that exists already ``ObjectExists``."""
        work = asyncio.to_thread(getattr(self._client, operation), Bucket=self.bucket, **params)
        try:
            if operation in _TRANSFERS:
                return await work
            return await asyncio.wait_for(work, self.call_timeout_s)
        except TimeoutError:
            log.warning("object store did not answer %s within %g s", operation, self.call_timeout_s)
            raise StoreUnavailable(f"The object store did not answer within {self.call_timeout_s:g} s.") from None
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code == "PreconditionFailed" or status == 412:
                raise ObjectExists(params.get("Key", "")) from None
            if code == "NoSuchUpload" and operation == "abort_multipart_upload":
                return {}
            if code in ("NoSuchKey", "NotFound") or (status == 404 and code not in ("NoSuchBucket", "NoSuchUpload")):
                raise FileNotFoundError(params.get("Key", "")) from None
            # Anything else — a server error, refused credentials, a wrong region (400
            # AuthorizationHeaderMalformed; a 301 botocore could not follow), a conditional write racing
            # another (409), a request the store timed out (400 RequestTimeout), an upload the
            # store forgot (NoSuchUpload) — is the store's or its configuration's, never the
            # client's: 503, and the code in the log for the operator.
            log.warning("object store refused %s: %s (%s)", operation, code or "-", status)
            raise StoreUnavailable(f"The object store refused the request ({code or status}).") from None
        except BotoCoreError as exc:  # no connection, a timeout, no credentials found
            log.warning("object store unreachable for %s: %s", operation, type(exc).__name__)
            raise StoreUnavailable(f"The object store cannot be reached ({type(exc).__name__}).") from None

    def close(self) -> None:
        self._client.close()


def _is_oss(endpoint_url: str) -> bool:
    host = (urlsplit(endpoint_url).hostname or "").lower()
    return host == "aliyuncs.com" or host.endswith(".aliyuncs.com")


def forbid_overwrite(request: Any, **_: Any) -> None:
    """botocore's ``before-sign`` hook for OSS: its own write-once condition (see the module's docstring)."""
    request.headers["x-oss-forbid-overwrite"] = "true"


def _seen(probe: asyncio.Task[None]) -> None:
    """A probe's failure was answered to its callers, or nobody was left to hear it."""
    if not probe.cancelled():
        probe.exception()


# One session of each per process: a session loads S3's API description (≈0.1 s) once, and finds the
# credentials (botocore's chain) once; each store makes its own clients from them.
@functools.cache
def _botocore() -> botocore.session.Session:
    return botocore.session.get_session()


@functools.cache
def _aiobotocore() -> aiobotocore.session.AioSession:
    return aiobotocore.session.get_session()


class _S3Upload:
    """One object going up. Every call that creates something in the bucket (the multipart upload,
    the object itself) is a future of its own, shielded from the request's cancellation: its thread
    cannot be stopped, so ``abort`` waits for it and then undoes whatever it did — a cancelled
    request would otherwise never learn the upload id it created, or that its put succeeded."""

    def __init__(self, store: S3Store, name: str) -> None:
        self._store = store
        self._name = name
        self._buffer = bytearray()
        self._digest = hashlib.sha256()
        self._size = 0
        self._creating: asyncio.Future[Any] | None = None  # the multipart upload being created
        self._parts: list[dict[str, Any]] = []
        self._sending: asyncio.Future[Any] | None = None  # the part in flight
        self._finishing: asyncio.Future[Any] | None = None  # the put, or the completion

    def _start(self, operation: str, **params: Any) -> asyncio.Future[Any]:
        return asyncio.ensure_future(self._store.call(operation, Key=self._name, **params))

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        self._size += len(chunk)
        if len(self._buffer) >= self._store.part_size:
            part, self._buffer = bytes(self._buffer), bytearray()
            await self._send(part)

    async def _upload_id(self) -> str:
        if self._creating is None:
            self._creating = self._start("create_multipart_upload")
        return (await asyncio.shield(self._creating))["UploadId"]

    async def _send(self, part: bytes) -> None:
        await asyncio.to_thread(self._digest.update, part)
        await self._settle()
        upload_id = await self._upload_id()
        number = len(self._parts) + 1
        self._sending = self._start("upload_part", UploadId=upload_id, PartNumber=number, Body=part)

    async def _settle(self) -> None:
        """Wait for the part in flight; it stays in flight (for ``abort`` to wait for) until it is done."""
        if self._sending is None:
            return
        sent = await asyncio.shield(self._sending)
        self._sending = None
        self._parts.append({"PartNumber": len(self._parts) + 1, "ETag": sent["ETag"]})

    async def commit(self) -> Stored:
        if self._creating is None:
            part, self._buffer = bytes(self._buffer), bytearray()
            await asyncio.to_thread(self._digest.update, part)
            self._finishing = self._start("put_object", Body=part, IfNoneMatch="*")
        else:
            if self._buffer:
                part, self._buffer = bytes(self._buffer), bytearray()
                await self._send(part)
            await self._settle()
            self._finishing = self._start(
                "complete_multipart_upload",
                UploadId=await self._upload_id(),
                MultipartUpload={"Parts": self._parts},
                IfNoneMatch="*",
            )
        await asyncio.shield(self._finishing)
        return Stored(self._digest.hexdigest(), self._size)

    async def abort(self) -> None:
        self._buffer = bytearray()
        # Their threads cannot be stopped: wait for them, so nothing lands in the bucket after the abort.
        for call in (self._creating, self._sending, self._finishing):
            if call is not None:
                await asyncio.wait([call])
                _succeeded(call)  # its error, if any, was reported by whoever saw it first
        if _succeeded(self._finishing):
            # The object is ours (its key is this upload's own): a put refused with ObjectExists did not succeed.
            await self._store.call("delete_object", Key=self._name)
        elif _succeeded(self._creating):
            upload_id = self._creating.result()["UploadId"]  # type: ignore[union-attr]
            await self._store.call("abort_multipart_upload", Key=self._name, UploadId=upload_id)


def _succeeded(call: asyncio.Future[Any] | None) -> bool:
    """Whether ``call`` (done) finished without an error; an error was reported by whoever saw it first."""
    return call is not None and not call.cancelled() and call.exception() is None
