"""Through a real ``lode serve``: usage ingest from four concurrent clients against the raw driver's
``executemany``, and the fixed cost of a licensed 100-row query beyond DuckDB's own time (run by
hand; prints figures, never passes or fails).

    .venv/bin/python bench/serve_bench.py [--rounds 12] [--reps 60] [--rows 1000000] [--workers 1 2]
    LODE_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/lode_serve_bench .venv/bin/python bench/serve_bench.py

For each database — SQLite in a temporary directory and, when LODE_BENCH_PG_URL names a scratch
database whose name contains "bench" (its public schema is dropped and migrated afresh), PostgreSQL
— the marketplace is set up through the API in-process, as the tests do: a provider, an L1 product
on a capped free plan with four licences held by four consumers (reported usage counts toward
real counters), and an L2 product whose release is a 1M-row ``visits`` table
(``delivery_bench.make_parquet``) with a licence. Then that app is closed and ``lode serve
--no-worker --workers N`` is started as a subprocess on the same database and data directory (a
free port on 127.0.0.1; ``--no-worker``: the outbox worker's deliveries are not the request's
work), once per ``--workers`` value, and driven over HTTP by httpx from this process.

**Ingest.** Four clients, each on a connection of its own, post 1,000-event batches (the provider's
admin; every event with a fresh idempotency key; bodies encoded before the clock starts) to
``POST /v1/usage-events``; against them, four raw driver connections insert the same rows (ids,
payload hashes and timestamps as the app writes them, driver-ready before the clock starts) into
the same ``usage_events`` table — aiosqlite ``executemany`` + commit on SQLite, asyncpg
``executemany`` in a transaction on PostgreSQL. A round runs each case for three batches per
client, the cases in a shuffled order; throughput is events per second of wall time over all rounds.

**Fixed cost.** One client asks ``POST /v1/licences/{id}/query`` for 100 rows (five columns, two
conditions: ``delivery_bench.ROWS_QUERY``), end to end over HTTP (key, licence, reserve, DuckDB,
settle, audit, JSON); against it, DuckDB runs the SQL the compiler writes for that query
(``compiler.rows_sql``) on the same published file in this process, on one connection with
``threads=1`` and the query memory limit, as the sandbox has. Interleaved, shuffled; the fixed cost
is the difference of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.delivery_bench import ROWS_QUERY, Bench, make_parquet
from bench.delivery_bench import TABLE as VISITS
from bench.ingest_bench import CAPPED_PLAN as INGEST_PLAN
from bench.ingest_bench import Batches, raw_inserter
from bench.scratch import command_line, databases, served
from catalog import policy
from catalog.delivery import compiler
from catalog.delivery.schemas import QueryRequest
from catalog.settings import Settings
from tests.support import Catalogue

PEPPER = "bench-pepper-" + "x" * 40  # bench/scratch.py's
CLIENTS = 4
BATCHES_PER_ROUND = 3  # per client and case


@dataclass
class Setup:
    settings: Settings
    environ: dict[str, str]
    ingest_headers: dict[str, str]
    query_url: str
    query_headers: dict[str, str]
    table_path: str
    batches: Any  # bench.ingest_bench.Batches, its bind processors made by the app's dialect


async def set_up(url: str, tmp: Path, parquet: Path, batch_size: int) -> Setup:
    async with served(url, tmp) as (settings, app, client, actors):
        bench = Bench(client, actors, Catalogue(client, actors))
        owner = await bench.provider()
        l1 = await bench.published(owner, "L1", plans=[INGEST_PLAN])
        licences = [await bench.licence_on(l1, owner, await bench.consumer()) for _ in range(CLIENTS)]
        l2 = await bench.publish(owner, "L2", parquet)
        consumer = await bench.consumer()
        licence = await bench.licence_on(l2, owner, consumer)
        batches = Batches(licences, owner.org_id, batch_size, app.state.engine.dialect)
    tables = sorted((tmp / "data" / "objects" / "releases" / l2["release_id"] / "tables").glob("*.parquet"))
    environ = {
        **os.environ,
        "LODE_ENV": "development",
        "LODE_DATA_DIR": str(tmp / "data"),
        "LODE_DATABASE_URL": url,
        "LODE_KEY_PEPPER": PEPPER,  # the API keys made above are hashed with it
        "LODE_LOG_LEVEL": "WARNING",
    }
    return Setup(
        settings=settings,
        environ=environ,
        ingest_headers={**owner.headers, "Content-Type": "application/json"},
        query_url=f"/v1/licences/{licence['id']}/query",
        query_headers=consumer["analyst"].headers,
        table_path=str(tables[0]),
        batches=batches,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(setup: Setup, port: int, workers: int) -> subprocess.Popen[bytes]:
    lode = Path(sys.executable).with_name("lode")
    command = [str(lode), "serve", "--host", "127.0.0.1", "--port", str(port), "--no-worker", "--workers", str(workers)]
    return subprocess.Popen(command, env=setup.environ, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def start_server(setup: Setup, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    server = spawn(setup, port, workers)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(300):
            if server.poll() is not None:
                raise SystemExit(f"lode serve exited: {server.stderr.read().decode() if server.stderr else ''}")
            try:
                if (await client.get("/ready")).status_code == 200:
                    # Every worker process answers before the clock starts: ask a few times.
                    for _ in range(8 * workers):
                        await client.get("/ready")
                    return server, base
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    server.terminate()
    raise SystemExit("lode serve did not become ready in 30 s")


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


async def ingest(setup: Setup, base: str, rounds: int, size: int) -> tuple[float, float]:
    """(API events/s, raw events/s), four concurrent clients each."""
    raws = [await raw_inserter(setup.settings) for _ in range(CLIENTS)]
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    clients = [httpx.AsyncClient(base_url=base, timeout=120, limits=limits) for _ in range(CLIENTS)]

    async def api_client(client: httpx.AsyncClient, bodies: list[bytes]) -> None:
        for body in bodies:
            response = await client.post("/v1/usage-events", content=body, headers=setup.ingest_headers)
            answer = response.json()
            assert response.status_code == 200 and answer["inserted"] == size, (response.status_code, answer)

    async def raw_client(insert: Callable[[list[tuple[Any, ...]]], Awaitable[None]], batches: list[Any]) -> None:
        for rows in batches:
            await insert(rows)

    def api_round() -> list[Awaitable[None]]:
        return [api_client(c, [setup.batches.body() for _ in range(BATCHES_PER_ROUND)]) for c in clients]

    def raw_round() -> list[Awaitable[None]]:
        return [raw_client(insert, [setup.batches.rows() for _ in range(BATCHES_PER_ROUND)]) for insert, _ in raws]

    spent = {"api": 0.0, "raw": 0.0}
    rng = random.Random(4)
    try:
        for round_ in range(-1, rounds):  # one warm-up round
            order = [("api", api_round), ("raw", raw_round)]
            rng.shuffle(order)
            for label, make in order:
                work = make()  # bodies and rows are made before the clock starts
                started = time.perf_counter()
                await asyncio.gather(*work)
                if round_ >= 0:
                    spent[label] += time.perf_counter() - started
    finally:
        for _, close in raws:
            await close()
        for client in clients:
            await client.aclose()
    events = rounds * CLIENTS * BATCHES_PER_ROUND * size
    return events / spent["api"], events / spent["raw"]


async def fixed_cost(setup: Setup, base: str, reps: int) -> tuple[float, float]:
    """(API p50 ms, DuckDB p50 ms) of the 100-row query."""
    query = msgspec.convert(ROWS_QUERY, QueryRequest)
    compiled = compiler.rows_sql(query, VISITS, setup.table_path, policy.rule("L2"))
    conn = duckdb.connect(config={"threads": 1, "memory_limit": setup.settings.query_memory_limit})
    samples: dict[str, list[float]] = {"api": [], "duckdb": []}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def api() -> None:
            response = await client.post(setup.query_url, json=ROWS_QUERY, headers=setup.query_headers)
            assert response.status_code == 200 and len(response.json()["rows"]) == 100, response.text[:300]

        async def direct() -> None:
            assert len(conn.execute(compiled.sql, compiled.params).fetchall()) == 101

        cases: list[tuple[str, Callable[[], Awaitable[None]]]] = [("api", api), ("duckdb", direct)]
        rng = random.Random(6)
        for rep in range(-5, reps):
            rng.shuffle(cases)
            for label, call in cases:
                started = time.perf_counter()
                await call()
                if rep >= 0:
                    samples[label].append((time.perf_counter() - started) * 1000)
    conn.close()
    return statistics.median(samples["api"]), statistics.median(samples["duckdb"])


async def run(url: str, tmp: Path, parquet: Path, args: argparse.Namespace) -> None:
    setup = await set_up(url, tmp, parquet, args.batch_size)
    for workers in args.workers:
        server, base = await start_server(setup, workers)
        try:
            api_rate, raw_rate = await ingest(setup, base, args.rounds, args.batch_size)
            api_ms, duck_ms = await fixed_cost(setup, base, args.reps)
        finally:
            stop_server(server)
        print(f"  lode serve --workers {workers}:")
        print(f"    ingest, {CLIENTS} clients × {args.batch_size:,}-event batches: API {api_rate:,.0f} events/s, "
              f"raw executemany {raw_rate:,.0f} events/s → {api_rate / raw_rate:.2f}×")  # fmt: skip
        print(f"    100-row query: API {api_ms:.1f} ms, DuckDB {duck_ms:.1f} ms (p50 of {args.reps}) → fixed cost "
              f"{api_ms - duck_ms:.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12, help="ingest rounds (3 batches per client and case)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=60, help="100-row queries per case")
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows of the queried table")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    print(command_line(__file__))
    with tempfile.TemporaryDirectory(prefix="lode-serve-bench-") as name:
        tmp = Path(name)
        parquet = tmp / "visits.parquet"
        make_parquet(parquet, args.rows)
        for url, directory in databases(tmp, skip_sqlite=args.skip_sqlite):
            asyncio.run(run(url, directory, parquet, args))


if __name__ == "__main__":
    main()
