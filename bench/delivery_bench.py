"""Delivery benchmark: queries through the API versus the same SQL on a plain DuckDB connection,
and the cost of metering (run by hand; prints figures, never passes or fails).

    .venv/bin/python bench/delivery_bench.py [--rows 1000000] [--reps 200] [--agg-reps 60]
    LODE_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/lode_delivery_bench .venv/bin/python bench/delivery_bench.py

Builds a synthetic ``visits`` table (``--rows`` rows, five visits per person; person_id, age, sex,
sixteen districts, hba1c, visit_date) as Parquet in a temporary directory, and publishes it through
the API — upload, publish, submit, review, apply, approve, accept, as the tests do — into a fresh data
directory: once as an L2 product and once as an L4 one, each with a free plan whose caps are set
(so the reserve and settle steps update real counters). The app is ``create_app`` driven in-process
by httpx's ASGITransport with its lifespan run, on SQLite in a temporary file, and — when
LODE_BENCH_PG_URL names a scratch database whose name contains "bench" (its public schema is dropped
and migrated afresh) — on PostgreSQL.

Cases, run interleaved (every repetition runs each case once, in a shuffled order) so that they
share the machine's noise:

    rows L2 api        POST /query: 5 columns, two conditions, limit 100 (DuckDB stops at the
                       100th match: ≈3 ms)
    rows L2 api -meter the same, with metering.reserve / metering.settle patched to no-ops here
    rows direct        the SQL the compiler produced for it, on a plain DuckDB connection
    sorted L2 api      the same, ordered by hba1c descending: the whole file is read for the top 100
    sorted L2 api -meter, sorted direct   as for rows
    agg L2 api         GROUP BY district: count, avg(hba1c) (with the disclosure statistics)
    agg L2 direct      its SQL, direct
    agg L4 api         the same at L4: anonymised (bench/l4_bench.py measures it against COUNT(DISTINCT))
    agg L4 direct      its SQL, direct

"Direct" is one long-lived in-memory connection with ``threads=1`` and the same memory limit as the
sandbox (STYLE rule 16 fixes one thread per query); the same SQL with DuckDB's default thread count
is shown as well, for scale. The SQL is captured from the compiler during a warm-up request, so it
is byte for byte what the API ran, on the same published Parquet file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import served
from catalog.delivery import anonymised_sql, compiler
from catalog.metering import reservations as metering
from tests.delivery.conftest import Delivery
from tests.support import Catalogue, Party, expect

DISTRICTS = [
    "Huangpu", "Xuhui", "Changning", "Jing'an", "Putuo", "Hongkou", "Yangpu", "Minhang",
    "Baoshan", "Jiading", "Pudong", "Jinshan", "Songjiang", "Qingpu", "Fengxian", "Chongming",
]  # fmt: skip
TABLE: dict[str, Any] = {
    "table": "visits",
    "person_key": "person_id",
    "max_rows_per_person": 10,
    "fields": [
        {"name": "person_id", "type": "string", "description": "pseudonymous id", "sensitive": True},
        {"name": "age", "type": "integer", "description": "age at visit, years", "min": 0, "max": 120},
        {"name": "sex", "type": "string", "description": "sex", "categories": ["F", "M"]},
        {"name": "district", "type": "string", "description": "Shanghai district", "categories": DISTRICTS},
        {"name": "hba1c", "type": "number", "description": "HbA1c, %", "min": 3, "max": 20},
        {"name": "visit_date", "type": "date", "description": "date of the visit"},
    ],
}
CAPPED_PLAN = {
    "name": "Research (free, capped)",
    "kind": "free",
    "currency": "CNY",
    "caps": {"queries": 10**9, "rows_returned": 10**12},
}
TERMS = {"use_conditions": ["GRU"], "max_term_months": 24}
ROWS_QUERY = {
    "table": "visits",
    "select": ["person_id", "age", "sex", "district", "hba1c"],
    "where": [{"field": "district", "op": "=", "value": "Pudong"}, {"field": "age", "op": ">=", "value": 60}],
    "limit": 100,
}
SORTED_QUERY = {**ROWS_QUERY, "order_by": [{"field": "hba1c", "direction": "desc"}]}
AGG_QUERY = {
    "table": "visits",
    "group_by": ["district"],
    "aggregates": [{"fn": "count"}, {"fn": "avg", "field": "hba1c"}],
}


def command_line() -> str:
    env = os.environ.get("LODE_BENCH_PG_URL", "").strip()
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else sys.executable
    words = [python, os.path.relpath(__file__), *sys.argv[1:]]
    return ("$ " + (f"LODE_BENCH_PG_URL={env} " if env else "")) + " ".join(shlex.quote(w) for w in words)


def make_parquet(path: Path, rows: int) -> None:
    """``rows`` visits, five per person, deterministic (DuckDB's setseed + random())."""
    started = time.perf_counter()
    conn = duckdb.connect()
    conn.execute("SELECT setseed(0.42)")
    districts = "[" + ", ".join("'" + d.replace("'", "''") + "'" for d in DISTRICTS) + "]"
    conn.execute(
        f"""
        COPY (
            SELECT 'p' || lpad(CAST(i // 5 AS VARCHAR), 7, '0') AS person_id,
                   CAST(18 + (hash(i // 5) % 72) AS BIGINT) AS age,
                   CASE WHEN hash(i // 5 + 1) % 2 = 0 THEN 'F' ELSE 'M' END AS sex,
                   {districts}[1 + CAST(hash(i // 5 + 2) % 16 AS INTEGER)] AS district,
                   round(4.0 + random() * 10.0, 1) AS hba1c,
                   DATE '2018-01-01' + CAST(hash(i) % 2700 AS INTEGER) AS visit_date
            FROM range(?) AS t(i)
        ) TO '{path}' (FORMAT parquet)
        """,
        [rows],
    )
    conn.close()
    print(f"  made {rows:,} rows ({path.stat().st_size / 1e6:.1f} MB Parquet) in {time.perf_counter() - started:.1f} s")


class Bench(Delivery):
    async def publish(self, owner: Party, grade: str, parquet: Path) -> dict[str, Any]:
        return await self.publish_csv(owner, grade, TABLE, parquet)

    async def publish_csv(self, owner: Party, grade: str, table: dict[str, Any], file: Path) -> dict[str, Any]:
        """A listed product of ``grade`` whose first release is ``file`` (CSV or Parquet) for ``table``."""
        product = await self.catalogue.draft(owner, grade=grade, dictionary=[table])
        offer = await self.catalogue.offer(owner, product["id"], terms=TERMS, plans=[CAPPED_PLAN])
        base = f"/v1/products/{product['id']}/releases"
        expect(await self.client.post(base, json={"version": "1"}, headers=owner.headers), 201)
        content = await asyncio.to_thread(file.read_bytes)
        name = f"{table['table']}{file.suffix}"
        expect(await self.client.put(f"{base}/1/files/{name}", content=content, headers=owner.headers), 201)
        expect(await self.client.post(f"{base}/1/publish", headers=owner.headers), 200)
        release = expect(await self.client.get(f"{base}/1", headers=owner.headers), 200)
        expect(await self.client.post(f"/v1/products/{product['id']}/submit", headers=owner.headers), 200)
        curator = await self.catalogue.curator()
        listed = expect(
            await self.client.post(
                f"/v1/products/{product['id']}/review", json={"decision": "list"}, headers=curator.headers
            ),
            200,
        )
        return {**listed, "plans": offer["plans"], "release_id": release["id"]}


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.95) - 1)]


class Recorder:
    """Wraps the compiler functions so the warm-up request leaves behind the very SQL it ran."""

    WRAPPED = (
        (compiler, "rows_sql"),
        (compiler, "aggregate_sql"),
        (compiler, "population_sql"),
        (anonymised_sql, "cells"),
    )

    def __init__(self) -> None:
        self.compiled: list[compiler.Compiled] = []
        self._saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> Recorder:
        for module, name in self.WRAPPED:
            original = getattr(module, name)
            self._saved.append((module, name, original))

            def wrapped(*args: Any, _original: Any = original, **kwargs: Any) -> compiler.Compiled:
                result = _original(*args, **kwargs)
                self.compiled.append(result)
                return result

            setattr(module, name, wrapped)
        return self

    def __exit__(self, *exc: object) -> None:
        for module, name, original in self._saved:
            setattr(module, name, original)


class NoMetering:
    """reserve and settle as no-ops, inside this process only: the gate, the work and the audit remain."""

    class _Held:
        id = "res_bench_unmetered"

    def __init__(self) -> None:
        self.saved = (metering.reserve, metering.settle)

    async def _reserve(self, *args: Any, **kwargs: Any) -> Any:
        return self._Held(), {}

    async def _settle(self, *args: Any, **kwargs: Any) -> bool:
        return True

    def __enter__(self) -> None:
        metering.reserve, metering.settle = self._reserve, self._settle  # type: ignore[assignment]

    def __exit__(self, *exc: object) -> None:
        metering.reserve, metering.settle = self.saved  # type: ignore[assignment]


async def run(url: str, parquet: Path, reps: int, agg_reps: int, tmp: Path) -> None:
    async with served(url, tmp) as (settings, _, client, actors):
        bench = Bench(client, actors, Catalogue(client, actors))
        started = time.perf_counter()
        owner = await bench.provider()
        consumer = await bench.consumer()
        l2 = await bench.publish(owner, "L2", parquet)
        l4 = await bench.publish(owner, "L4", parquet)
        licence_l2 = await bench.licence_on(l2, owner, consumer)
        licence_l4 = await bench.licence_on(l4, owner, consumer)
        print(f"  published and licensed L2 and L4 through the API in {time.perf_counter() - started:.1f} s")
        analyst = consumer["analyst"]

        async def api(licence: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
            return expect(await bench.query(licence["id"], analyst, body), 200)

        async def captured(licence: dict[str, Any], body: dict[str, Any]) -> list[compiler.Compiled]:
            with Recorder() as recorder:
                answer = await api(licence, body)
            print(f"  {licence['product_id']} {answer['mode']}: {len(answer['rows'])} rows, "
                  f"{len(answer['suppressed'])} suppressed, perturbed={answer['perturbed']}")  # fmt: skip
            return recorder.compiled

        sql_rows = await captured(licence_l2, ROWS_QUERY)
        sql_sorted = await captured(licence_l2, SORTED_QUERY)
        sql_l2 = await captured(licence_l2, AGG_QUERY)
        sql_l4 = await captured(licence_l4, AGG_QUERY)
        one = duckdb.connect(config={"threads": 1, "memory_limit": settings.query_memory_limit})
        default = duckdb.connect()
        threads = default.execute("SELECT current_setting('threads')").fetchone()[0]

        def direct(conn: duckdb.DuckDBPyConnection, statements: list[compiler.Compiled]) -> Callable[[], Any]:
            async def call() -> Any:
                return [conn.execute(c.sql, c.params).fetchall() for c in statements]

            return call

        def unmetered(body: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
            async def call() -> Any:
                with NoMetering():
                    return await api(licence_l2, body)

            return call

        cases: list[tuple[str, bool, Callable[[], Awaitable[Any]]]] = [
            ("rows L2 api", False, lambda: api(licence_l2, ROWS_QUERY)),
            ("rows L2 api -meter", False, unmetered(ROWS_QUERY)),
            ("rows direct", False, direct(one, sql_rows)),
            (f"rows direct {threads} thr", False, direct(default, sql_rows)),
            ("sorted L2 api", True, lambda: api(licence_l2, SORTED_QUERY)),
            ("sorted L2 api -meter", True, unmetered(SORTED_QUERY)),
            ("sorted direct", True, direct(one, sql_sorted)),
            ("agg L2 api", True, lambda: api(licence_l2, AGG_QUERY)),
            ("agg L2 direct", True, direct(one, sql_l2)),
            (f"agg L2 direct {threads} thr", True, direct(default, sql_l2)),
            ("agg L4 api", True, lambda: api(licence_l4, AGG_QUERY)),
            ("agg L4 direct", True, direct(one, sql_l4)),
            (f"agg L4 direct {threads} thr", True, direct(default, sql_l4)),
        ]
        samples: dict[str, list[float]] = {label: [] for label, _, _ in cases}
        rng = random.Random(7)
        for rep in range(-3, reps):  # three warm-up rounds, not counted
            order = [c for c in cases if not c[1] or rep < agg_reps]
            rng.shuffle(order)
            for label, _, call in order:
                t0 = time.perf_counter()
                await call()
                if rep >= 0:
                    samples[label].append((time.perf_counter() - t0) * 1000)
        one.close()
        default.close()

    print(f"  {reps} repetitions (aggregates and sorted rows {min(reps, agg_reps)}), interleaved")
    print(f"  {'case':<24}{'p50 ms':>9}{'p95 ms':>9}")
    p50: dict[str, tuple[float, float]] = {}
    for label, _, _ in cases:
        p50[label] = percentiles(samples[label])
        print(f"  {label:<24}{p50[label][0]:>9.2f}{p50[label][1]:>9.2f}")

    def ratio(api_label: str, direct_label: str) -> str:
        (a50, a95), (d50, d95) = p50[api_label], p50[direct_label]
        return f"p50 {a50 / d50:.2f}×, p95 {a95 / d95:.2f}×"

    print(f"  rows     api / direct (1 thread)      = {ratio('rows L2 api', 'rows direct')}   (target ≤ 1.3×)")
    print(f"  sorted   api / direct (1 thread)      = {ratio('sorted L2 api', 'sorted direct')}   (target ≤ 1.3×)")
    print(f"  agg L2   api / direct (1 thread)      = {ratio('agg L2 api', 'agg L2 direct')}   (target ≤ 1.3×)")
    print(f"  agg L4   api / direct (1 thread)      = {ratio('agg L4 api', 'agg L4 direct')}   (target ≤ 1.3×)")
    print(f"  agg L2   api / direct ({threads} threads)    = {ratio('agg L2 api', f'agg L2 direct {threads} thr')}")
    print(f"  agg L4   api / direct ({threads} threads)    = {ratio('agg L4 api', f'agg L4 direct {threads} thr')}")
    for name, label in (("rows", "rows L2 api"), ("sorted", "sorted L2 api")):
        (on50, on95), (off50, off95) = p50[label], p50[f"{label} -meter"]
        print(
            f"  metering overhead ({name}, 100){' ' * (9 - len(name))}= p50 {(on50 / off50 - 1) * 100:+.1f} %, "
            f"p95 {(on95 / off95 - 1) * 100:+.1f} %   (target ≤ 10 %)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--agg-reps", type=int, default=60, help="repetitions of the aggregate and sorted cases")
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    print(command_line())
    pg_url = os.environ.get("LODE_BENCH_PG_URL", "").strip()
    if pg_url and "bench" not in (urlparse(pg_url).path or ""):
        raise SystemExit("LODE_BENCH_PG_URL must name a scratch database with 'bench' in its name: it is reset.")
    with tempfile.TemporaryDirectory(prefix="lode-bench-") as name:
        tmp = Path(name)
        parquet = tmp / "visits.parquet"
        make_parquet(parquet, args.rows)
        if not args.skip_sqlite:
            asyncio.run(run(f"sqlite+aiosqlite:///{tmp}/bench.db", parquet, args.reps, args.agg_reps, tmp / "sqlite"))
        if pg_url:
            asyncio.run(run(pg_url, parquet, args.reps, args.agg_reps, tmp / "pg"))


if __name__ == "__main__":
    main()
