"""Release files: ingest streams, checks and detects; publish writes typed Parquet with record keys;
DuckDB stays inside its sandbox and its time limit. Ingest and publish run on the local folder and,
with LODE_TEST_S3, on a bucket of moto's S3 server too."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import re
import shutil
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest

from catalog.datafiles import ColumnInfo, parse_file_name, schema_problems
from catalog.errors import PayloadTooLarge, Unprocessable, ValidationFailed
from catalog.objectstore import StoreUnavailable
from catalog.storage import RECORD_KEY, Storage, TableSpec, release_key

RELEASE = "rel_01"

VISITS = {
    "table": "visits",
    "person_key": "patient_id",
    "max_rows_per_person": 10,
    "fields": [
        {"name": "patient_id", "type": "integer", "sensitive": False},
        {"name": "visited_on", "type": "date", "sensitive": False},
        {"name": "weight", "type": "number", "sensitive": True},
        {"name": "ward", "type": "string", "sensitive": False},
        {"name": "smoker", "type": "boolean", "sensitive": False},
    ],
}
VISITS_ROWS = [
    ["patient_id", "ward", "visited_on", "weight", "smoker"],
    [1, "A", "2024-01-02", 70, "true"],
    [1, "A", "2024-02-03", 71, "false"],
    [2, "B", "2024-01-05", 88, "true"],
    [3, "C", "2024-03-09", 54, "false"],
]


@pytest.fixture(name="local")
def fx_local(tmp_path: Path) -> Iterator[Storage]:
    storage = Storage(tmp_path / "objects", memory_limit="256MB", timeout_s=5.0)
    yield storage
    storage.close()


@pytest.fixture(params=["local", "s3"], name="storage")
def fx_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    """The local folder, or a fresh bucket on moto (LODE_TEST_S3)."""
    store = None
    if request.param == "s3":
        from catalog.objectstore.s3 import S3Store
        from tests.moto_server import REGION

        moto, bucket = request.getfixturevalue("moto"), request.getfixturevalue("bucket")
        store = S3Store(bucket, "lode", endpoint_url=moto.url, region=REGION, path_style=True)
    storage = Storage(tmp_path / "objects", store=store, memory_limit="256MB", timeout_s=5.0)
    yield storage
    storage.close()


def write_csv(path: Path, rows: list[list[object]]) -> bytes:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path.read_bytes()


async def chunked(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def leftovers(storage: Storage) -> list[str]:
    """The names of every object left under the release's uploads, incoming ones included."""
    return [key.rsplit("/", 1)[1] for key in await storage.store.keys(f"{release_key(RELEASE)}/uploads/")]


async def stored(storage: Storage, key: str, size: int) -> bytes:
    """A stored file of ``size`` bytes, read back through the store."""
    return b"".join([chunk async for chunk in await storage.open(key, 0, size - 1)])


def read_table(storage: Storage, sql: str, key: str) -> list[tuple]:
    """``sql`` (one parameter: the file) on a published table, in the sandbox, wherever it is stored."""
    with storage.sandbox.open_connection(storage.tables_location(RELEASE)) as conn:
        return conn.execute(sql, [storage.location(key)]).fetchall()


class TestParseFileName:
    @pytest.mark.parametrize(
        ("name", "expected"),
        [
            ("visits.csv", ("visits", "csv")),
            ("visits.CSV", ("visits", "csv")),
            ("Lab_Results2.Parquet", ("Lab_Results2", "parquet")),
            ("_x.parquet", ("_x", "parquet")),
            ("t" * 63 + ".csv", ("t" * 63, "csv")),
        ],
    )
    def test_accepts(self, name: str, expected: tuple[str, str]) -> None:
        assert parse_file_name(name) == expected

    @pytest.mark.parametrize(
        "name",
        [
            "",
            "t" * 125 + ".csv",  # 129 characters
            "t" * 64 + ".csv",  # table name too long
            "../x.csv",
            "..csv",
            "x..csv",
            "a/b.csv",
            "a\\b.csv",
            "/etc/passwd",
            ".hidden.csv",
            ".csv",
            "x.txt",
            "x",
            "x.csv.gz",
            "x.csv\n",
            "x\x00.csv",
            "x\t.csv",
            "my file.csv",
            "données.csv",
            "患者.csv",
            "my-table.csv",
            "1visits.csv",
            "a.b.csv",
        ],
    )
    def test_refuses(self, name: str) -> None:
        with pytest.raises(ValidationFailed) as caught:
            parse_file_name(name)
        assert caught.value.errors is not None
        assert caught.value.errors[0].field == "name"


class TestSchemaProblems:
    COLUMNS = [
        ColumnInfo("patient_id", "BIGINT"),
        ColumnInfo("visited_on", "DATE"),
        ColumnInfo("weight", "DECIMAL(5,1)"),
        ColumnInfo("ward", "VARCHAR"),
        ColumnInfo("smoker", "BOOLEAN"),
    ]

    def test_matching_columns_have_no_problems(self) -> None:
        assert schema_problems(VISITS, self.COLUMNS) == []

    @pytest.mark.parametrize("duckdb_type", ["TINYINT", "INTEGER", "HUGEINT", "UBIGINT", "FLOAT", "DOUBLE"])
    def test_number_takes_integers_and_floats(self, duckdb_type: str) -> None:
        columns = [c if c.name != "weight" else ColumnInfo("weight", duckdb_type) for c in self.COLUMNS]
        assert schema_problems(VISITS, columns) == []

    def test_missing_column(self) -> None:
        problems = schema_problems(VISITS, [c for c in self.COLUMNS if c.name != "ward"])
        assert problems == ["Table visits: column ward is in the dictionary but not in the file."]

    def test_extra_column(self) -> None:
        problems = schema_problems(VISITS, [*self.COLUMNS, ColumnInfo("name", "VARCHAR")])
        assert problems == ["Table visits: column name is in the file but not in the dictionary."]

    def test_names_compare_exactly(self) -> None:
        columns = [c if c.name != "ward" else ColumnInfo("Ward", "VARCHAR") for c in self.COLUMNS]
        assert len(schema_problems(VISITS, columns)) == 2

    @pytest.mark.parametrize(
        ("column", "duckdb_type"),
        [
            ("patient_id", "DOUBLE"),
            ("patient_id", "VARCHAR"),
            ("visited_on", "TIMESTAMP"),
            ("visited_on", "VARCHAR"),
            ("weight", "VARCHAR"),
            ("ward", "BIGINT"),
            ("smoker", "VARCHAR"),
        ],
    )
    def test_wrong_type(self, column: str, duckdb_type: str) -> None:
        columns = [c if c.name != column else ColumnInfo(column, duckdb_type) for c in self.COLUMNS]
        problems = schema_problems(VISITS, columns)
        assert len(problems) == 1
        assert problems[0].startswith(f"Table visits: column {column} is {duckdb_type} in the file")

    def test_record_key_name_is_reserved(self) -> None:
        table = {**VISITS, "fields": [*VISITS["fields"], {"name": RECORD_KEY, "type": "integer"}]}
        problems = schema_problems(table, [*self.COLUMNS, ColumnInfo(RECORD_KEY, "UBIGINT")])
        assert problems == [f"Table visits: column {RECORD_KEY} uses the reserved prefix _lode_."]

    def test_person_key_must_be_a_field(self) -> None:
        problems = schema_problems({**VISITS, "person_key": "mrn"}, self.COLUMNS)
        assert problems == ["Table visits: the person_key mrn is not a column of the dictionary."]


class TestIngest:
    async def test_csv(self, storage: Storage, tmp_path: Path) -> None:
        data = write_csv(tmp_path / "visits.csv", VISITS_ROWS)

        result = await storage.ingest(chunked(data), release_id=RELEASE, name="visits.csv", max_bytes=10_000)

        assert re.fullmatch(rf"releases/{RELEASE}/uploads/[0-9a-f]{{12}}-visits\.csv", result.storage_key)
        assert (result.table, result.format) == ("visits", "csv")
        assert result.sha256 == hashlib.sha256(data).hexdigest()
        assert result.bytes == len(data)
        assert result.rows == 4
        assert result.columns == [
            ColumnInfo("patient_id", "BIGINT"),
            ColumnInfo("ward", "VARCHAR"),
            ColumnInfo("visited_on", "DATE"),
            ColumnInfo("weight", "BIGINT"),
            ColumnInfo("smoker", "BOOLEAN"),
        ]
        assert await stored(storage, result.storage_key, len(data)) == data
        assert await leftovers(storage) == [result.storage_key.rsplit("/", 1)[1]]

    async def test_parquet(self, storage: Storage, tmp_path: Path) -> None:
        made = tmp_path / "labs.parquet"
        duckdb.connect().execute(
            "COPY (SELECT range::INTEGER AS pid, (range * 1.5)::DECIMAL(9, 1) AS value, 'x' || range AS code "
            "FROM range(1000)) TO ? (FORMAT parquet)",
            [str(made)],
        )
        data = made.read_bytes()

        result = await storage.ingest(chunked(data, 4096), release_id=RELEASE, name="labs.parquet", max_bytes=10**6)

        assert (result.table, result.format, result.rows) == ("labs", "parquet", 1000)
        assert result.sha256 == hashlib.sha256(data).hexdigest()
        assert result.bytes == len(data)
        assert result.columns == [
            ColumnInfo("pid", "INTEGER"),
            ColumnInfo("value", "DECIMAL(9,1)"),
            ColumnInfo("code", "VARCHAR"),
        ]

    async def test_types_are_detected_from_every_row(self, storage: Storage, tmp_path: Path) -> None:
        rows: list[list[object]] = [["n"], *([i] for i in range(50_000)), ["2.5"]]
        data = write_csv(tmp_path / "late.csv", rows)

        result = await storage.ingest(chunked(data, 65536), release_id=RELEASE, name="late.csv", max_bytes=10**7)

        assert result.columns == [ColumnInfo("n", "DOUBLE")]

    async def test_a_ragged_csv_loses_no_lines(self, storage: Storage) -> None:
        # Left to itself the sniffer would skip to the widest row and call it the header.
        data = b"a,b\n1,2\n3,4,5,6\n"

        result = await storage.ingest(chunked(data), release_id=RELEASE, name="t.csv", max_bytes=100)

        assert (result.columns, result.rows) == ([ColumnInfo("a,b", "VARCHAR")], 2)

    async def test_each_upload_gets_its_own_key(self, storage: Storage) -> None:
        first = await storage.ingest(chunked(b"a\n1\n"), release_id=RELEASE, name="t.csv", max_bytes=100)
        result = await storage.ingest(chunked(b"a\n1\n2\n"), release_id=RELEASE, name="t.csv", max_bytes=100)

        assert result.rows == 2 and result.storage_key != first.storage_key
        assert await stored(storage, result.storage_key, 6) == b"a\n1\n2\n"
        assert await stored(storage, first.storage_key, 4) == b"a\n1\n"  # the caller deletes it once replaced
        await storage.delete(first.storage_key)
        assert [n.split("-", 1)[1] for n in await leftovers(storage)] == ["t.csv"]

    async def test_too_large_is_refused_and_removed(self, storage: Storage) -> None:
        with pytest.raises(PayloadTooLarge) as caught:
            await storage.ingest(chunked(b"a\n" + b"1\n" * 100), release_id=RELEASE, name="t.csv", max_bytes=50)

        assert caught.value.code == "file_too_large"
        assert caught.value.status == 413
        assert await leftovers(storage) == []

    async def test_exactly_the_limit_is_accepted(self, storage: Storage) -> None:
        result = await storage.ingest(chunked(b"a\n1\n"), release_id=RELEASE, name="t.csv", max_bytes=4)
        assert result.bytes == 4

    @pytest.mark.parametrize(
        ("name", "data"),
        [
            ("t.csv", b""),
            ("t.csv", b"\n\n  \n"),
            ("t.csv", bytes(range(256)) * 40),
            ("t.parquet", b"a,b\n1,2\n"),
            ("t.parquet", b""),
        ],
    )
    async def test_unreadable_is_refused_and_removed(self, storage: Storage, name: str, data: bytes) -> None:
        with pytest.raises(Unprocessable) as caught:
            await storage.ingest(chunked(data, 100), release_id=RELEASE, name=name, max_bytes=10**6)

        assert caught.value.code == "unreadable_file"
        assert str(storage.root) not in caught.value.detail and storage.store.root not in caught.value.detail
        assert await leftovers(storage) == []

    async def test_a_failed_upload_keeps_the_earlier_one(self, storage: Storage) -> None:
        kept = await storage.ingest(chunked(b"a\n1\n"), release_id=RELEASE, name="t.csv", max_bytes=100)
        with pytest.raises(PayloadTooLarge):
            await storage.ingest(chunked(b"a\n" * 100), release_id=RELEASE, name="t.csv", max_bytes=100)

        assert await stored(storage, kept.storage_key, 4) == b"a\n1\n"
        assert await leftovers(storage) == [kept.storage_key.rsplit("/", 1)[1]]

    async def test_a_commit_cancelled_while_linking_leaves_nothing(self, local: Storage) -> None:
        key = f"{release_key(RELEASE)}/uploads/t.csv"
        upload = local.store.create(key)
        await upload.write(b"a\n1\n")
        committing = asyncio.create_task(upload.commit())
        await asyncio.sleep(0)  # the commit runs to its link, whose thread starts
        committing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await committing
        await asyncio.to_thread(linked, local.store.path(key))  # the thread goes on and makes the name

        await upload.abort()

        assert await local.store.keys("") == []
        assert list((local.root / release_key(RELEASE) / "uploads").iterdir()) == []

    async def test_bad_name_writes_nothing(self, storage: Storage) -> None:
        with pytest.raises(ValidationFailed):
            await storage.ingest(chunked(b"a\n1\n"), release_id=RELEASE, name="../t.csv", max_bytes=100)
        assert await storage.store.keys("") == []


def linked(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.001)


class TestPublish:
    async def ingest_visits(self, storage: Storage, tmp_path: Path) -> TableSpec:
        data = write_csv(tmp_path / "visits.csv", VISITS_ROWS)
        result = await storage.ingest(chunked(data), release_id=RELEASE, name="visits.csv", max_bytes=10_000)
        return TableSpec(upload_key=result.storage_key, format=result.format, dictionary=VISITS)

    async def test_writes_typed_parquet_with_record_keys(self, storage: Storage, tmp_path: Path) -> None:
        spec = await self.ingest_visits(storage, tmp_path)

        published, _ = await storage.publish(RELEASE, {"visits": spec})

        table = published["visits"]
        assert table.key == f"releases/{RELEASE}/tables/visits-{table.sha256}.parquet"
        assert (table.rows, table.persons) == (4, 3)
        content = await stored(storage, table.key, table.bytes)
        assert table.sha256 == hashlib.sha256(content).hexdigest()
        described = read_table(storage, "DESCRIBE SELECT * FROM read_parquet(?)", table.key)
        assert [(row[0], row[1]) for row in described] == [
            ("patient_id", "BIGINT"),
            ("visited_on", "DATE"),
            ("weight", "DOUBLE"),
            ("ward", "VARCHAR"),
            ("smoker", "BOOLEAN"),
            (RECORD_KEY, "UBIGINT"),
        ]
        query = f"SELECT patient_id, weight, {RECORD_KEY} FROM read_parquet(?) ORDER BY visited_on"
        first = read_table(storage, query, table.key)
        assert [row[:2] for row in first] == [(1, 70.0), (2, 88.0), (1, 71.0), (3, 54.0)]
        assert len({row[2] for row in first}) == 4
        assert read_table(storage, query, table.key) == first
        # Stored in key order, so a page's row groups are found by their min/max (delivery/paging.py).
        in_file = [row[0] for row in read_table(storage, f"SELECT {RECORD_KEY} FROM read_parquet(?)", table.key)]
        assert in_file == sorted(in_file)
        assert await storage.store.keys(f"releases/{RELEASE}/tables/") == [table.key]
        assert storage.table_location(RELEASE, "visits", {"visits": {"sha256": table.sha256}}) == storage.location(
            table.key
        )

    async def test_record_keys_differ_between_publishes(self, storage: Storage, tmp_path: Path) -> None:
        spec = await self.ingest_visits(storage, tmp_path)
        query = f"SELECT list({RECORD_KEY} ORDER BY {RECORD_KEY}) FROM read_parquet(?)"

        first, _ = await storage.publish(RELEASE, {"visits": spec})
        second, _ = await storage.publish(RELEASE, {"visits": spec})

        assert first["visits"].key != second["visits"].key  # each publish's file has its own key
        assert read_table(storage, query, first["visits"].key) != read_table(storage, query, second["visits"].key)

    async def test_a_failed_table_leaves_no_table_behind(self, storage: Storage, tmp_path: Path) -> None:
        visits = await self.ingest_visits(storage, tmp_path)
        words = await storage.ingest(chunked(b"n\nabc\n"), release_id=RELEASE, name="words.csv", max_bytes=100)
        wrong = {"table": "words", "person_key": "n", "fields": [{"name": "n", "type": "integer"}]}
        specs = {"visits": visits, "words": TableSpec(upload_key=words.storage_key, format="csv", dictionary=wrong)}

        with pytest.raises(Unprocessable) as caught:
            await storage.publish(RELEASE, specs)

        assert caught.value.code == "unreadable_file"
        assert caught.value.detail.startswith("Table words could not be written: ")
        assert await storage.store.keys(f"releases/{RELEASE}/tables/") == []
        assert list((storage.root / "tmp").iterdir()) == []  # the local scratch went too

    async def test_refuses_an_upload_of_another_release(self, storage: Storage, tmp_path: Path) -> None:
        spec = await self.ingest_visits(storage, tmp_path)
        with pytest.raises(ValueError):
            await storage.publish("rel_02", {"visits": spec})


class TestTableLocation:
    def test_a_table_published_before_content_addressed_keys_keeps_its_name(self, local: Storage) -> None:
        legacy = local.root / "releases" / RELEASE / "tables" / "visits.parquet"
        legacy.parent.mkdir(parents=True)
        legacy.write_bytes(b"PAR1")
        tables = {"visits": {"sha256": "ab" * 32}}

        assert local.table_location(RELEASE, "visits", tables) == str(legacy)
        assert local.table_location(RELEASE, "visits", None) == str(legacy)


class TestReady:
    async def test_a_store_that_answers_is_ready(self, storage: Storage) -> None:
        await storage.ready()

    async def test_a_folder_that_cannot_be_written_is_not_ready(self, local: Storage) -> None:
        shutil.rmtree(local.root)
        local.root.write_text("a file where the folder was")

        with pytest.raises(StoreUnavailable) as caught:
            await local.ready()

        assert caught.value.status == 503 and caught.value.code == "storage_unavailable"


class TestSandbox:
    def test_reads_only_the_allowed_directory(self, local: Storage) -> None:
        storage = local
        release_dir = storage.root / "releases"
        for release in (RELEASE, "rel_02"):
            (release_dir / release / "uploads").mkdir(parents=True)
            (release_dir / release / "uploads" / "t.csv").write_text("a\n1\n")
        outside = storage.root.parent / "outside.csv"
        outside.write_text("a\n1\n")
        conn = storage.sandbox.open_connection(release_dir / RELEASE)

        inside = release_dir / RELEASE / "uploads" / "t.csv"
        assert conn.execute("SELECT count(*) FROM read_csv(?)", [str(inside)]).fetchone() == (1,)
        for forbidden in (
            release_dir / "rel_02" / "uploads" / "t.csv",
            outside,
            f"{release_dir / RELEASE}/../rel_02/uploads/t.csv",
            "/etc/passwd",
        ):
            with pytest.raises(duckdb.PermissionException):
                conn.execute("SELECT * FROM read_csv(?)", [str(forbidden)]).fetchall()
        with pytest.raises(duckdb.PermissionException):
            conn.execute(f"COPY (SELECT 1) TO '{storage.root.parent / 'out.csv'}'")
        conn.close()

    def test_configuration_is_locked(self, local: Storage) -> None:
        conn = local.sandbox.open_connection(local.root)
        settings = dict(
            conn.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('threads', 'enable_external_access', 'lock_configuration', 'autoload_known_extensions', "
                "'enable_progress_bar')"
            ).fetchall()
        )
        assert settings == {
            "threads": "1",
            "enable_external_access": "false",
            "lock_configuration": "true",
            "autoload_known_extensions": "false",
            # A bar drawn on stdout after 2 s of work would corrupt `lode demo`'s JSON output.
            "enable_progress_bar": "false",
        }
        for statement in (
            "SET enable_external_access = true",
            "SET allowed_directories = ['/']",
            "SET lock_configuration = false",
            "SET threads = 8",
            "SET memory_limit = '100GB'",
        ):
            with pytest.raises(duckdb.InvalidInputException, match="locked"):
                conn.execute(statement)
        conn.close()

    def test_allowed_directory_must_be_in_the_store(self, local: Storage) -> None:
        with pytest.raises(ValueError):
            local.sandbox.open_connection(local.root.parent)
        with pytest.raises(ValueError):
            local.sandbox.open_connection("s3://bucket/releases/")


class TestRunLimited:
    async def test_returns_the_result(self, local: Storage) -> None:
        assert await local.sandbox.run_limited(lambda conn: conn.execute("SELECT 42").fetchone()) == (42,)

    async def test_interrupts_a_long_query(self, local: Storage) -> None:
        query = "SELECT count(*) FROM range(1000000000) a, range(1000000000) b WHERE a.range + b.range = 7"
        started = time.monotonic()

        with pytest.raises(Unprocessable) as caught:
            await local.sandbox.run_limited(lambda conn: conn.execute(query).fetchall(), timeout_s=0.3)

        assert caught.value.code == "query_timeout"
        assert time.monotonic() - started < 10

    async def test_a_cancelled_request_stops_its_query_at_once(self, local: Storage) -> None:
        """A client that goes away leaves nobody to read the answer: the query is interrupted then,
        not at its 5 s limit, and its thread is free again."""
        query = "SELECT count(*) FROM range(1000000000) a, range(1000000000) b WHERE a.range + b.range = 7"
        running, ended = threading.Event(), threading.Event()

        def work(conn):
            running.set()
            try:
                return conn.execute(query).fetchall()
            finally:
                ended.set()

        task = asyncio.create_task(local.sandbox.run_limited(work))
        assert await asyncio.to_thread(running.wait, 5)
        await asyncio.sleep(0.1)
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(ended.wait, 4)
        assert time.monotonic() - started < 2
        assert await local.sandbox.run_limited(lambda conn: conn.execute("SELECT 1").fetchone()) == (1,)

    async def test_the_time_limit_starts_when_a_thread_takes_the_query(self, local: Storage) -> None:
        """A query queued behind busy worker threads has not used its time yet."""
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=2))
        busy = [asyncio.create_task(asyncio.to_thread(time.sleep, 2.0)) for _ in range(2)]
        await asyncio.sleep(0.05)
        # Queued ~2 s behind them, far past its 1 s limit, which has not started yet.
        answer = await local.sandbox.run_limited(lambda conn: conn.execute("SELECT 42").fetchone(), timeout_s=1.0)
        assert answer == (42,)
        await asyncio.gather(*busy)

    async def test_a_query_past_the_memory_limit_is_a_422(self, tmp_path) -> None:
        small = Storage(tmp_path / "store", memory_limit="8MB")
        query = "SELECT list(range ORDER BY range DESC) FROM range(20000000)"
        with pytest.raises(Unprocessable) as caught:
            await small.sandbox.run_limited(lambda conn: conn.execute(query).fetchall())
        small.sandbox.close()
        assert caught.value.code == "query_too_large" and "8MB" in caught.value.detail

    async def test_a_value_the_data_cannot_take_is_a_422(self, local: Storage) -> None:
        with pytest.raises(Unprocessable) as caught:
            await local.sandbox.run_limited(lambda conn: conn.execute("SELECT CAST('x' AS INTEGER)").fetchall())
        assert caught.value.code == "query_failed"

    async def test_other_errors_pass_through(self, local: Storage) -> None:
        with pytest.raises(duckdb.CatalogException):
            await local.sandbox.run_limited(lambda conn: conn.execute("SELECT * FROM nowhere").fetchall())


class TestPaths:
    @pytest.mark.parametrize(
        "key", ["", ".", "..", "../x", "/etc/passwd", "releases/../../x", "a\\..\\..\\x", "releases/\x00", "a//b"]
    )
    def test_refuses_keys_outside_the_store(self, storage: Storage, key: str) -> None:
        with pytest.raises(ValueError):
            storage.location(key)

    def test_refuses_a_symlink_out_of_the_store(self, local: Storage) -> None:
        (local.root / "releases").mkdir()
        (local.root / "releases" / "link").symlink_to(local.root.parent)
        with pytest.raises(ValueError):
            local.location("releases/link/secret")

    @pytest.mark.parametrize("release_id", ["", "..", "a/b", "rel 1", "x" * 65])
    def test_refuses_bad_release_ids(self, storage: Storage, release_id: str) -> None:
        with pytest.raises(ValueError):
            release_key(release_id)
        with pytest.raises(ValueError):
            storage.tables_location(release_id)

    async def test_delete_is_idempotent(self, storage: Storage) -> None:
        result = await storage.ingest(chunked(b"a\n1\n"), release_id=RELEASE, name="t.csv", max_bytes=100)

        await storage.delete(result.storage_key)
        await storage.delete(result.storage_key)

        assert await storage.store.keys("") == []
