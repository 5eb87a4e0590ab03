"""The S3 store on moto's S3 server (LODE_TEST_S3): multipart uploads with their sha256, nothing left by
a failed or cancelled upload, ranged reads, write-once keys, readiness, and DuckDB confined to one
release's prefix with credentials no query can see."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import duckdb
import pytest
from botocore.awsrequest import AWSResponse

from catalog import shielded
from catalog.errors import PayloadTooLarge, Unprocessable
from catalog.objectstore import ObjectExists, StoreUnavailable
from catalog.objectstore.s3 import PART_SIZE, READ_TIMEOUT_S, READY_TIMEOUT_S, S3Store
from catalog.storage import Storage, TableSpec
from tests.moto_server import CREDENTIALS, REGION, free_port
from tests.test_storage import VISITS, VISITS_ROWS, write_csv

MiB = 2**20


def pattern(size: int) -> bytes:
    """``size`` bytes that differ from part to part, so a part out of order changes the sha256."""
    block = hashlib.sha256(str(size).encode()).digest() * (MiB // 32)
    return b"".join(block[i % 7 :] + block[: i % 7] for i in range(size // MiB + 1))[:size]


async def chunks_of(data: bytes, size: int = MiB) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture(name="storage")
def fx_storage(moto: Any, bucket: str, tmp_path: Path) -> Iterator[Storage]:
    store = S3Store(bucket, "lode", endpoint_url=moto.url, region=REGION, path_style=True)
    storage = Storage(tmp_path / "objects", store=store, memory_limit="256MB", timeout_s=10.0)
    yield storage
    storage.close()


async def read_all(storage: Storage, key: str, start: int, end: int) -> bytes:
    return b"".join([chunk async for chunk in await storage.open(key, start, end)])


async def publish(storage: Storage, tmp_path: Path, release: str) -> str:
    """A release with its visits table published; the table's key."""
    data = write_csv(tmp_path / f"{release}.csv", VISITS_ROWS)
    upload = await storage.ingest(chunks_of(data, 7), release_id=release, name="visits.csv", max_bytes=10_000)
    spec = TableSpec(upload_key=upload.storage_key, format="csv", dictionary=VISITS)
    published, _ = await storage.publish(release, {"visits": spec})
    return published["visits"].key


class TestUpload:
    async def test_a_file_past_the_part_size_goes_up_in_parts_with_its_sha256(
        self, storage: Storage, moto: Any, bucket: str
    ) -> None:
        data = pattern(2 * PART_SIZE + 123_457)
        upload = storage.store.create("releases/rel_01/uploads/big.bin")
        for start in range(0, len(data), MiB):
            await upload.write(data[start : start + MiB])

        kept = await upload.commit()

        assert kept == (hashlib.sha256(data).hexdigest(), len(data))
        head = moto.client().head_object(Bucket=bucket, Key="lode/releases/rel_01/uploads/big.bin")
        assert head["ContentLength"] == len(data) and head["ETag"].strip('"').endswith("-3")  # three parts
        assert await read_all(storage, "releases/rel_01/uploads/big.bin", 0, len(data) - 1) == data
        assert moto.everything(bucket) == (["lode/releases/rel_01/uploads/big.bin"], [])

    async def test_an_oversized_upload_leaves_nothing(self, storage: Storage, moto: Any, bucket: str) -> None:
        data = pattern(3 * PART_SIZE)

        with pytest.raises(PayloadTooLarge):
            await storage.ingest(chunks_of(data), release_id="rel_01", name="t.csv", max_bytes=2 * PART_SIZE + 1)

        assert moto.everything(bucket) == ([], [])  # no object, and the multipart upload was aborted

    async def test_a_cancelled_upload_leaves_nothing(self, storage: Storage, moto: Any, bucket: str) -> None:
        sent_two_parts = asyncio.Event()

        async def stalls() -> AsyncIterator[bytes]:
            async for chunk in chunks_of(pattern(2 * PART_SIZE + MiB)):
                yield chunk
            sent_two_parts.set()
            await asyncio.Event().wait()  # the client stops sending and goes away

        task = asyncio.create_task(storage.ingest(stalls(), release_id="rel_01", name="t.csv", max_bytes=10**9))
        await sent_two_parts.wait()
        assert moto.everything(bucket) == ([], [ANY])  # two parts are up, in a multipart upload still open
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await shielded.drain()

        assert moto.everything(bucket) == ([], [])

    @pytest.mark.parametrize(
        ("operation", "size"),
        [("PutObject", 1000), ("CreateMultipartUpload", 2 * PART_SIZE), ("CompleteMultipartUpload", 2 * PART_SIZE)],
    )
    async def test_cancelled_while_the_store_creates_leaves_nothing(
        self, storage: Storage, moto: Any, bucket: str, operation: str, size: int
    ) -> None:
        sending, landed = threading.Event(), threading.Event()

        def slow(**_: Any) -> None:  # botocore's own hook, in the call's worker thread
            sending.set()
            time.sleep(0.5)

        storage.store._client.meta.events.register(f"before-send.s3.{operation}", slow)
        storage.store._client.meta.events.register(f"after-call.s3.{operation}", lambda **_: landed.set())
        task = asyncio.create_task(
            storage.ingest(chunks_of(pattern(size)), release_id="rel_01", name="t.csv", max_bytes=10**9)
        )
        await asyncio.to_thread(sending.wait)
        task.cancel()  # the request goes away while its call is on the wire
        with pytest.raises(asyncio.CancelledError):
            await task
        await shielded.drain()
        assert await asyncio.to_thread(landed.wait, 10)  # what the call made is in the bucket by now

        assert moto.everything(bucket) == ([], [])

    async def test_a_small_file_is_one_put(self, storage: Storage, moto: Any, bucket: str) -> None:
        kept = await storage.store.put_file("releases/rel_01/uploads/x.csv", write_small(storage))

        assert kept.size == 4
        assert moto.everything(bucket) == (["lode/releases/rel_01/uploads/x.csv"], [])


def write_small(storage: Storage) -> Path:
    path = storage.root / "tmp" / "small.csv"
    path.write_bytes(b"a\n1\n")
    return path


class TestRead:
    async def test_a_range_is_read_from_the_store(self, storage: Storage) -> None:
        data = pattern(PART_SIZE + MiB)
        await storage.store.put_file("releases/rel_01/uploads/r.bin", _local(storage, data))
        key = "releases/rel_01/uploads/r.bin"

        assert await read_all(storage, key, 10, 29) == data[10:30]
        assert await read_all(storage, key, PART_SIZE - 5, PART_SIZE + 5) == data[PART_SIZE - 5 : PART_SIZE + 6]
        assert await read_all(storage, key, len(data) - 3, len(data) - 1) == data[-3:]

    async def test_a_missing_object_fails_before_the_first_byte(self, storage: Storage) -> None:
        with pytest.raises(FileNotFoundError):
            await storage.open("releases/rel_01/uploads/none.bin", 0, 9)


def _local(storage: Storage, data: bytes) -> Path:
    path = storage.root / "tmp" / "local.bin"
    path.write_bytes(data)
    return path


class TestWriteOnce:
    async def test_a_published_table_cannot_be_written_again(
        self, storage: Storage, tmp_path: Path, moto: Any, bucket: str
    ) -> None:
        key = await publish(storage, tmp_path, "rel_01")
        before = moto.client().get_object(Bucket=bucket, Key=f"lode/{key}")["Body"].read()

        with pytest.raises(ObjectExists):
            await storage.store.put_file(key, write_small(storage))
        upload = storage.store.create(key)
        big = pattern(PART_SIZE + 1)
        await upload.write(big)
        with pytest.raises(ObjectExists):
            await upload.commit()  # a multipart upload is refused at its completion
        await upload.abort()

        assert moto.client().get_object(Bucket=bucket, Key=f"lode/{key}")["Body"].read() == before
        assert moto.everything(bucket)[1] == []


@pytest.fixture(name="silent")
async def fx_silent() -> AsyncIterator[str]:
    """An endpoint that accepts connections and never answers (until the test is over: its stuck
    threads then fail at once, and the event loop does not wait out their read timeouts to close)."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=100)
    accepted: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                accepted.append(listener.accept()[0])

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()
    for conn in accepted:
        conn.close()


class TestSilentStore:
    """A store that takes connections and never answers gets every caller its answer in bounded time."""

    async def test_a_query_gets_its_503_soon_after_its_time_limit(
        self, storage: Storage, tmp_path: Path, silent: str
    ) -> None:
        key = await publish(storage, tmp_path, "rel_01")
        hung = Storage(
            tmp_path / "hung",
            store=S3Store(storage.store.bucket, "lode", endpoint_url=silent, region=REGION, path_style=True),
            timeout_s=1.0,
        )

        with pytest.raises(StoreUnavailable):
            async with asyncio.timeout(READ_TIMEOUT_S):  # its thread waits that long for each request
                await hung.sandbox.run_limited(
                    lambda conn: conn.execute("SELECT count(*) FROM read_parquet(?)", [hung.location(key)]).fetchall(),
                    allowed_dir=hung.tables_location("rel_01"),
                )

    async def test_a_download_gets_its_503_within_the_call_limit(self, bucket: str, silent: str) -> None:
        store = S3Store(bucket, "lode", endpoint_url=silent, region=REGION, path_style=True, call_timeout_s=1.0)

        with pytest.raises(StoreUnavailable):
            async with asyncio.timeout(READ_TIMEOUT_S):
                await store.open("releases/rel_01/tables/t.parquet", 0, 9)

    async def test_readiness_answers_in_its_budget_and_probes_once_at_a_time(self, bucket: str, silent: str) -> None:
        store = S3Store(bucket, "lode", endpoint_url=silent, region=REGION, path_style=True)
        lists: list[object] = []
        store._client.meta.events.register("before-call.s3.ListObjectsV2", lambda **_: lists.append(1))

        async with asyncio.timeout(READY_TIMEOUT_S + 1):
            answers = await asyncio.gather(*(store.ready() for _ in range(5)), return_exceptions=True)
        with pytest.raises(StoreUnavailable):
            async with asyncio.timeout(READY_TIMEOUT_S + 1):
                await store.ready()  # the stuck probe is still the one in flight

        assert all(isinstance(answer, StoreUnavailable) for answer in answers)
        assert len(lists) == 1


class TestReady:
    async def test_a_reachable_bucket_is_ready(self, storage: Storage) -> None:
        await storage.ready()

    async def test_credentials_that_cannot_write_are_not_ready(self, storage: Storage) -> None:
        # The bucket lists, but refuses every write as read-only credentials would.
        storage.store._client.meta.events.register("before-send.s3.PutObject", lambda **_: canned(403, "AccessDenied"))

        with pytest.raises(StoreUnavailable):
            await storage.ready()

    async def test_the_write_proof_is_made_once_a_minute_and_leaves_nothing(
        self, storage: Storage, moto: Any, bucket: str
    ) -> None:
        puts: list[object] = []
        storage.store._client.meta.events.register("before-call.s3.PutObject", lambda **_: puts.append(1))

        await storage.ready()
        await storage.ready()

        assert len(puts) == 1
        assert moto.everything(bucket) == ([], [])

    async def test_an_endpoint_that_is_down_is_not_ready(self, bucket: str, tmp_path: Path) -> None:
        down = S3Store(bucket, "lode", endpoint_url=f"http://127.0.0.1:{free_port()}", region=REGION, path_style=True)

        with pytest.raises(StoreUnavailable) as caught:
            await down.ready()

        assert caught.value.status == 503 and caught.value.code == "storage_unavailable"
        assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in caught.value.detail
        down.close()

    async def test_a_missing_bucket_is_not_ready(self, moto: Any) -> None:
        missing = S3Store("lode-no-such-bucket", endpoint_url=moto.url, region=REGION, path_style=True)

        with pytest.raises(StoreUnavailable):
            await missing.ready()
        missing.close()


class TestSandbox:
    @pytest.fixture(name="conn")
    async def fx_conn(self, storage: Storage, tmp_path: Path) -> Any:
        """A connection allowed release rel_01's tables, with rel_02 published beside it."""
        self.mine = storage.location(await publish(storage, tmp_path, "rel_01"))
        self.other = storage.location(await publish(storage, tmp_path, "rel_02"))
        conn = storage.sandbox.open_connection(storage.tables_location("rel_01"))
        yield conn
        conn.close()

    def refused(self, conn: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> str:
        with pytest.raises(duckdb.Error) as caught:
            conn.execute(sql, list(params)).fetchall()
        text = str(caught.value)
        for secret in (CREDENTIALS["AWS_SECRET_ACCESS_KEY"], CREDENTIALS["AWS_ACCESS_KEY_ID"]):
            assert secret not in text
        return text

    async def test_reads_its_release_straight_from_the_bucket(self, conn: duckdb.DuckDBPyConnection) -> None:
        assert conn.execute("SELECT count(*) FROM read_parquet(?)", [self.mine]).fetchone() == (4,)

    async def test_another_release_is_refused(self, conn: duckdb.DuckDBPyConnection) -> None:
        assert "disabled by configuration" in self.refused(conn, "SELECT * FROM read_parquet(?)", self.other)
        climbed = self.mine.rsplit("/releases/", 1)[0] + "/releases/rel_01/tables/../../rel_02/tables/x.parquet"
        self.refused(conn, "SELECT * FROM read_parquet(?)", climbed)
        self.refused(conn, "SELECT * FROM glob(?)", self.mine.split("/lode/")[0] + "/**")

    async def test_local_files_are_refused(self, conn: duckdb.DuckDBPyConnection, storage: Storage) -> None:
        local = write_small(storage)
        for path in (str(local), "/etc/hostname", "/proc/self/environ"):
            assert "disabled by configuration" in self.refused(conn, "SELECT * FROM read_text(?)", path)

    async def test_the_bucket_is_read_only_even_under_the_allowed_prefix(
        self, conn: duckdb.DuckDBPyConnection, storage: Storage, moto: Any, bucket: str
    ) -> None:
        before = moto.everything(bucket)
        target = storage.tables_location("rel_01") + "written.csv"
        self.refused(conn, f"COPY (SELECT 1 AS a) TO '{target}'")
        assert moto.everything(bucket) == before

    async def test_credentials_never_reach_a_query(self, conn: duckdb.DuckDBPyConnection) -> None:
        secrets = conn.execute("SELECT count(*) FROM duckdb_secrets()").fetchone() if _lists(conn) else (0,)
        assert secrets == (0,)
        settings = conn.execute("SELECT name, value FROM duckdb_settings()").fetchall()
        shown = " ".join(f"{name}={value}" for name, value in settings)
        for secret in (CREDENTIALS["AWS_SECRET_ACCESS_KEY"], CREDENTIALS["AWS_ACCESS_KEY_ID"]):
            assert secret not in shown and secret in os.environ.values()
        self.refused(conn, "SELECT getenv('AWS_SECRET_ACCESS_KEY')")
        self.refused(conn, "SELECT current_setting('s3_secret_access_key')")

    async def test_an_unreachable_store_is_a_503_not_a_query_error(self, storage: Storage, tmp_path: Path) -> None:
        key = await publish(storage, tmp_path, "rel_01")
        down_store = S3Store(
            storage.store.bucket, "lode", endpoint_url=f"http://127.0.0.1:{free_port()}", region=REGION, path_style=True
        )
        down = Storage(tmp_path / "down", store=down_store, timeout_s=30.0)

        with pytest.raises(StoreUnavailable) as caught:
            await down.sandbox.run_limited(
                lambda conn: conn.execute("SELECT count(*) FROM read_parquet(?)", [down.location(key)]).fetchall(),
                allowed_dir=down.tables_location("rel_01"),
            )

        assert caught.value.status == 503
        down.close()


def _lists(conn: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``duckdb_secrets()`` answers at all here (refused is as good as empty)."""
    try:
        conn.execute("SELECT count(*) FROM duckdb_secrets()").fetchone()
    except duckdb.Error:
        return False
    return True


class TestReadFailures:
    """Whose fault a failed read is: the bucket's (503, worth retrying) or the file's (422, never)."""

    @pytest.mark.parametrize("data", [b"PAR1garbagegarbagePAR1", b"PAR1" + b"\0" * 100 + b"\x08\0\0\0PAR1"])
    async def test_a_corrupt_parquet_file_is_the_uploaders_problem(self, storage: Storage, data: bytes) -> None:
        with pytest.raises(Unprocessable) as caught:
            await storage.ingest(chunks_of(data), release_id="rel_01", name="t.parquet", max_bytes=10_000)

        assert caught.value.status == 422 and caught.value.code == "unreadable_file"

    async def test_a_published_table_missing_from_the_bucket_is_a_503(
        self, storage: Storage, tmp_path: Path, moto: Any, bucket: str
    ) -> None:
        key = await publish(storage, tmp_path, "rel_01")
        moto.client().delete_object(Bucket=bucket, Key=f"lode/{key}")

        with pytest.raises(StoreUnavailable) as caught:
            await storage.sandbox.run_limited(
                lambda conn: conn.execute("SELECT count(*) FROM read_parquet(?)", [storage.location(key)]).fetchall(),
                allowed_dir=storage.tables_location("rel_01"),
            )

        assert caught.value.status == 503


class TestRefusals:
    """Each S3 answer Lode has no specific meaning for is the store's (503), never a 500."""

    @pytest.fixture(name="offline")
    def fx_offline(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Store]:
        """A store whose requests are answered by ``self.answer`` before they reach any network."""
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
        store = S3Store("bucket", "lode", endpoint_url=f"http://127.0.0.1:{free_port()}", region=REGION)
        store._client.meta.events.register("before-send.s3", lambda request, **_: self.answer)
        yield store
        store.close()

    @pytest.mark.parametrize(
        ("status", "code"),
        [
            (400, "AuthorizationHeaderMalformed"),
            (400, "RequestTimeout"),
            (409, "ConditionalRequestConflict"),
            (404, "NoSuchUpload"),
        ],
    )
    async def test_an_unnamed_refusal_is_a_503(self, offline: S3Store, status: int, code: str) -> None:
        self.answer = canned(status, code)

        with pytest.raises(StoreUnavailable) as caught:
            await offline.call(
                "complete_multipart_upload",
                Key="lode/releases/rel_01/uploads/x.bin",
                UploadId="u1",
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"e"'}]},
            )

        assert caught.value.status == 503 and code in caught.value.detail

    async def test_a_missing_object_is_still_not_found(self, offline: S3Store) -> None:
        self.answer = canned(404, "NoSuchKey")

        with pytest.raises(FileNotFoundError):
            await offline.call("get_object", Key="lode/releases/rel_01/uploads/none.bin")

    async def test_a_taken_key_is_still_object_exists(self, offline: S3Store) -> None:
        self.answer = canned(412, "PreconditionFailed")

        with pytest.raises(ObjectExists):
            await offline.call("put_object", Key="lode/releases/rel_01/uploads/x.bin", Body=b"x", IfNoneMatch="*")


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def canned(status: int, code: str) -> AWSResponse:
    body = f"<Error><Code>{code}</Code><Message>canned</Message></Error>".encode()
    return AWSResponse("http://store", status, {"Content-Type": "application/xml"}, _Raw(body))


class TestAlibabaOss:
    """OSS ignores If-None-Match: write-once there rests on its own header, sent to OSS only."""

    def sent_headers(self, endpoint_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test-key")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
        store = S3Store("bucket", "lode", endpoint_url=endpoint_url, region="oss-cn-hangzhou")
        sent: dict[str, Any] = {}

        def answer(request: Any, **_: Any) -> AWSResponse:  # in place of the network
            sent.update(request.headers.items())
            return AWSResponse(endpoint_url, 200, {}, _Raw(b""))

        store._client.meta.events.register("before-send.s3.PutObject", answer)
        store._client.put_object(Bucket="bucket", Key="lode/x", Body=b"x", IfNoneMatch="*")
        store.close()
        return {name.lower(): value.decode() if isinstance(value, bytes) else value for name, value in sent.items()}

    def test_a_put_to_oss_forbids_overwriting(self, monkeypatch: pytest.MonkeyPatch) -> None:
        sent = self.sent_headers("https://oss-cn-hangzhou.aliyuncs.com", monkeypatch)

        assert sent["x-oss-forbid-overwrite"] == "true"
        assert "x-oss-forbid-overwrite" in sent["authorization"]  # signed with the rest

    @pytest.mark.parametrize("endpoint_url", ["https://s3.eu-west-1.amazonaws.com", "http://127.0.0.1:9000", ""])
    def test_other_stores_never_get_the_header(self, endpoint_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
        sent = self.sent_headers(endpoint_url or "https://s3.amazonaws.com", monkeypatch)

        assert "x-oss-forbid-overwrite" not in sent and sent["if-none-match"] == "*"
