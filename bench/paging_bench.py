"""Paging benchmark: 1,000 rows in ten pages of 100 against one 1,000-row query, through the API
on a 1M-row file, and what one page costs (run by hand; prints figures, never passes or fails).

    .venv/bin/python bench/paging_bench.py [--rows 1000000] [--reps 30]
    LODE_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/lode_delivery_bench .venv/bin/python bench/paging_bench.py

The table and its publication are ``delivery_bench.py``'s: ``--rows`` synthetic visits as Parquet,
published and licensed as an L2 product through the API, on SQLite in a temporary file and — with
LODE_BENCH_PG_URL naming a scratch database whose name contains "bench" — on PostgreSQL.

Cases, interleaved (each repetition runs each once, in a shuffled order):

    one 1000           POST /query, limit 1000 — one answer of 1,000 rows
    pages 10×100       limit 100, then next_cursor nine times — the same 1,000 rows
    page 1 / page 10   the first page alone, and the tenth (its cursor made beforehand)
    … sorted           the same three with order_by hba1c desc (the cursor then carries hba1c)
    direct …           the SQL of page 1 and page 10 on a plain DuckDB connection (one thread)
    direct unordered   page 1's SQL without ORDER BY: what a rows query cost before answers
                       were ordered by the record key (DuckDB stopped at the 101st row)

Every page is a query of its own (reserve, DuckDB, settle, audit), so ten pages cost about ten
times one page; the figures say how much of a page is fixed cost and how much is DuckDB's scan.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.delivery_bench import Bench, make_parquet, percentiles
from bench.scratch import command_line, databases, served
from catalog.delivery import compiler
from tests.support import Catalogue, expect

SELECT = ["person_id", "age", "sex", "district", "hba1c"]
PLAIN = {"table": "visits", "select": SELECT}
SORTED = {**PLAIN, "order_by": [{"field": "hba1c", "direction": "desc"}]}


async def run(url: str, parquet: Path, reps: int, tmp: Path) -> None:
    async with served(url, tmp) as (settings, _, client, actors):
        bench = Bench(client, actors, Catalogue(client, actors))
        owner = await bench.provider()
        consumer = await bench.consumer()
        product = await bench.publish(owner, "L2", parquet)
        licence = await bench.licence_on(product, owner, consumer)
        analyst = consumer["analyst"]

        async def api(body: dict[str, Any]) -> dict[str, Any]:
            return expect(await bench.query(licence["id"], analyst, body), 200)

        async def pages(body: dict[str, Any]) -> list[dict[str, Any]]:
            answers = [await api({**body, "limit": 100})]
            while len(answers) < 10:
                answers.append(await api({**body, "limit": 100, "cursor": answers[-1]["next_cursor"]}))
            return answers

        cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        direct_sql: dict[str, compiler.Compiled] = {}
        for name, body in (("", PLAIN), (" sorted", SORTED)):
            one = await api({**body, "limit": 1000})
            paged = await pages(body)
            rows = [row for answer in paged for row in answer["rows"]]
            assert rows == one["rows"] and len(rows) == 1000, "ten pages differ from the one answer"
            tenth = {**body, "limit": 100, "cursor": paged[8]["next_cursor"]}
            cases += [
                (f"one 1000{name}", lambda body=body: api({**body, "limit": 1000})),
                (f"pages 10×100{name}", lambda body=body: pages(body)),
                (f"page 1{name}", lambda body=body: api({**body, "limit": 100})),
                (f"page 10{name}", lambda tenth=tenth: api(tenth)),
            ]
            direct_sql[f"direct page 1{name}"] = await captured(api, {**body, "limit": 100})
            direct_sql[f"direct page 10{name}"] = await captured(api, tenth)
        first = direct_sql["direct page 1"]
        unordered = compiler.Compiled(
            sql=first.sql.split(" ORDER BY ")[0] + " LIMIT ?", params=first.params, columns=first.columns
        )
        direct_sql["direct unordered page 1"] = unordered
        conn = duckdb.connect(config={"threads": 1, "memory_limit": settings.query_memory_limit})
        for label, compiled in direct_sql.items():

            async def call(compiled: compiler.Compiled = compiled) -> Any:
                return conn.execute(compiled.sql, compiled.params).fetchall()

            cases.append((label, call))

        samples: dict[str, list[float]] = {label: [] for label, _ in cases}
        rng = random.Random(11)
        for rep in range(-2, reps):  # two warm-up rounds, not counted
            order = list(cases)
            rng.shuffle(order)
            for label, call in order:
                t0 = time.perf_counter()
                await call()
                if rep >= 0:
                    samples[label].append((time.perf_counter() - t0) * 1000)
        conn.close()

    print(f"  {reps} repetitions, interleaved")
    print(f"  {'case':<28}{'p50 ms':>9}{'p95 ms':>9}")
    p: dict[str, tuple[float, float]] = {}
    for label, _ in cases:
        p[label] = percentiles(samples[label])
        print(f"  {label:<28}{p[label][0]:>9.2f}{p[label][1]:>9.2f}")
    for name in ("", " sorted"):
        one50, pages50 = p[f"one 1000{name}"][0], p[f"pages 10×100{name}"][0]
        print(
            f"  1,000 rows{name or ' (record-key order)'}: ten pages {pages50:.1f} ms / one query {one50:.1f} ms"
            f" = {pages50 / one50:.1f}×; per page {pages50 / 10:.1f} ms"
            f" (DuckDB {p[f'direct page 1{name}'][0]:.1f} ms of it on page 1,"
            f" {p[f'direct page 10{name}'][0]:.1f} ms on page 10)"
        )
    print(
        f"  the fixed order's price on page 1: {p['direct page 1'][0]:.1f} ms ordered by record key against"
        f" {p['direct unordered page 1'][0]:.1f} ms unordered (DuckDB, one thread)"
    )


async def captured(api: Callable[[dict[str, Any]], Awaitable[Any]], body: dict[str, Any]) -> compiler.Compiled:
    """The SQL the API ran for ``body`` — page 10's with its keyset bound — byte for byte."""
    made: list[compiler.Compiled] = []
    original = compiler.rows_sql

    def recording(*args: Any, **kwargs: Any) -> compiler.Compiled:
        made.append(original(*args, **kwargs))
        return made[-1]

    compiler.rows_sql = recording  # type: ignore[assignment]
    try:
        await api(body)
    finally:
        compiler.rows_sql = original  # type: ignore[assignment]
    return made[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    print(command_line(__file__))
    with tempfile.TemporaryDirectory(prefix="lode-bench-") as name:
        tmp = Path(name)
        parquet = tmp / "visits.parquet"
        make_parquet(parquet, args.rows)
        for url, own in databases(tmp, skip_sqlite=args.skip_sqlite):
            asyncio.run(run(url, parquet, args.reps, own))


if __name__ == "__main__":
    main()
