"""Object storage benchmark: Lode's storage layer on the local disk and on an S3 API (run by hand;
prints figures, never passes or fails).

    .venv/bin/python bench/storage_bench.py [--mb 64] [--rows 2000000] [--reps 3]

The S3 API is moto's standalone server on 127.0.0.1 (``tests/moto_server.py``): a Python process
on this machine, so its figures are Lode's S3 path (botocore, multipart, ranged GETs, s3fs under
DuckDB) plus moto's own cost, and on a real bucket the network decides. Each figure is the median
of ``--reps``, both stores measured in the same run, and the ratio is S3 over local:

- upload: a file of ``--mb`` MiB streamed in 64 KiB chunks (an HTTP body's) through
  ``store.create`` — written, sha256 computed on the way, committed write-once (multipart on S3);
- download: the same file read back through ``Storage.open`` (a ranged read of the whole file, as
  a download streams it);
- the same upload and download with botocore alone against the same server (sequential 8 MiB
  parts, one GET read in 256 KiB pieces): what the S3 server itself allows, so the Lode column
  can be read as Lode's overhead over it;
- query: one aggregate (counts, an average and distinct persons by district) over a Parquet
  table of ``--rows`` rows, through the sandbox, as delivery runs it — from the local folder, and
  straight from the bucket through the registered read-only filesystem; first a cold run (the
  object's metadata not yet known to the process), then the median of warm ones.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from catalog.objectstore.s3 import PART_SIZE, S3Store
from catalog.storage import Storage
from tests.moto_server import CREDENTIALS, REGION, MotoServer

MiB = 2**20
CHUNK = 64 * 1024
AGGREGATE = (
    "SELECT district, count(*), avg(hba1c), count(DISTINCT person_id) FROM read_parquet(?) GROUP BY 1 ORDER BY 1"
)


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await work()
    return time.perf_counter() - started


async def upload(storage: Storage, key: str, data: bytes) -> None:
    writing = storage.store.create(key)
    view = memoryview(data)
    for start in range(0, len(data), CHUNK):
        await writing.write(bytes(view[start : start + CHUNK]))
    await writing.commit()


async def download(storage: Storage, key: str, size: int) -> None:
    got = 0
    async for chunk in await storage.open(key, 0, size - 1):
        got += len(chunk)
    assert got == size


def make_table(path: Path, rows: int) -> None:
    with duckdb.connect() as conn:
        conn.execute(
            """COPY (
                SELECT 'p' || lpad(CAST(i // 3 AS VARCHAR), 8, '0') AS person_id,
                       ['Huangpu', 'Xuhui', 'Pudong', 'Chongming'][1 + CAST(hash(i) % 4 AS INTEGER)] AS district,
                       round(5 + (hash(i * 7) % 150) / 10.0, 1) AS hba1c
                FROM range(?) AS t(i)
            ) TO ? (FORMAT parquet)""",
            [rows, str(path)],
        )


def raw_botocore(server: MotoServer, bucket: str, data: bytes, reps: int) -> tuple[float, float]:
    """Upload and download MB/s of botocore alone on the same server: no Lode in between."""
    client, ups, downs = server.client(), [], []
    for rep in range(reps):
        key = f"raw/{rep}"
        started = time.perf_counter()
        upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        parts = []
        for number, start in enumerate(range(0, len(data), PART_SIZE), 1):
            sent = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data[start : start + PART_SIZE]
            )
            parts.append({"PartNumber": number, "ETag": sent["ETag"]})
        client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})
        ups.append(time.perf_counter() - started)
        started = time.perf_counter()
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        while body.read(256 * 1024):
            pass
        downs.append(time.perf_counter() - started)
        client.delete_object(Bucket=bucket, Key=key)
    mb = len(data) / MiB
    return mb / statistics.median(ups), mb / statistics.median(downs)


async def measure(storage: Storage, data: bytes, table: Path, reps: int) -> dict[str, float]:
    ups, downs = [], []
    for rep in range(reps):
        key = f"releases/rel_bench/uploads/{rep:04d}-blob.bin"
        ups.append(await timed(lambda key=key: upload(storage, key, data)))
        downs.append(await timed(lambda key=key: download(storage, key, len(data))))
        await storage.delete(key)
    stored = await storage.store.put_file("releases/rel_bench/tables/visits.parquet", table)
    location = storage.location("releases/rel_bench/tables/visits.parquet")

    async def query() -> object:
        return await storage.sandbox.run_limited(
            lambda conn: conn.execute(AGGREGATE, [location]).fetchall(),
            allowed_dir=storage.tables_location("rel_bench"),
            timeout_s=600,
        )

    cold = await timed(query)
    warm = statistics.median([await timed(query) for _ in range(reps)])
    mb = len(data) / MiB
    return {
        "upload MB/s": mb / statistics.median(ups),
        "download MB/s": mb / statistics.median(downs),
        "query cold s": cold,
        "query warm s": warm,
        "table MB": stored.size / MiB,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=64, help="the uploaded and downloaded file, MiB")
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the Parquet table queried")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()

    os.environ.update(CREDENTIALS)
    server = MotoServer.start()
    try:
        with tempfile.TemporaryDirectory(prefix="lode-storage-bench-") as tmp:
            root = Path(tmp)
            data = os.urandom(args.mb * MiB)
            table = root / "visits.parquet"
            make_table(table, args.rows)
            local = Storage(root / "local", memory_limit="1GB")
            name = server.bucket()
            bucket = S3Store(name, "lode", endpoint_url=server.url, region=REGION, path_style=True)
            remote = Storage(root / "s3", store=bucket, memory_limit="1GB")
            figures = {}
            for label, storage in (("local disk", local), ("S3 (moto)", remote)):
                figures[label] = await measure(storage, data, table, args.reps)
                storage.close()
            raw_up, raw_down = raw_botocore(server, name, data, args.reps)
    finally:
        server.stop()

    local_f, s3_f = figures["local disk"], figures["S3 (moto)"]
    print(f"file {args.mb} MiB in {CHUNK // 1024} KiB chunks; table {args.rows:,} rows ({local_f['table MB']:.1f} MiB)")
    print(f"{'':18}{'local disk':>14}{'S3 (moto)':>14}{'S3 / local':>14}")
    for figure in ("upload MB/s", "download MB/s", "query cold s", "query warm s"):
        print(f"{figure:18}{local_f[figure]:>14.2f}{s3_f[figure]:>14.2f}{s3_f[figure] / local_f[figure]:>14.2f}")
    up, down = s3_f["upload MB/s"], s3_f["download MB/s"]
    print(f"botocore alone on the same server: upload {raw_up:.2f} MB/s (Lode's is {up / raw_up:.2f}x that), ", end="")
    print(f"download {raw_down:.2f} MB/s (Lode's is {down / raw_down:.2f}x that)")


if __name__ == "__main__":
    asyncio.run(main())
