"""L4 benchmark: what the anonymiser costs, and what it leaves an honest analyst (run by hand; prints
figures, never passes or fails).

    .venv/bin/python bench/l4_bench.py [--rows 1000000] [--reps 20] [--skip-speed] [--skip-utility]

**Speed.** A 1M-row ``visits`` table (``delivery_bench.make_parquet``: five visits per person, sixteen
districts) is published at L4 through the API into a fresh SQLite data directory. Cases, interleaved:

    api          POST /query through the app: two group fields (district, sex), count and avg(hba1c)
    anonymised   the SQL the anonymiser ran, direct on a one-thread DuckDB connection (the scan: cells,
                 per-person totals, flattening statistics)
    baseline     DuckDB computing the same cells with COUNT(DISTINCT person_id) and AVG, one thread
    layers       anonymiser.protect on the cells alone: the noise layers, thresholds and flattening
    *-where      the same with two conditions (an age range and a district excluded): each condition's
                 low-effect count per cell is in the scan

**Utility.** The demo's L4 products (``stroke-registry``, ``hcc-treatment-cohort``) are generated as
``lode demo`` makes them and published at L4; a benign workload of cross-tabs of large groups (group
by district, sex, the diagnosis or stage, an age range) runs through the API, and every released
value is compared with the truth computed directly: for counts of cells of at least 100 persons, the
median absolute relative error; for averages, how often the released value is within the column's
declared precision (one unit of its last decimal) of the true average.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
from litestar import Litestar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.delivery_bench import Bench, make_parquet
from bench.scratch import command_line, prepare
from catalog import policy
from catalog.app import create_app
from catalog.delivery import anonymised_sql, anonymiser, compiler
from catalog.delivery.schemas import QueryRequest
from catalog.demo.catalog import product as demo_product
from catalog.demo.data import write_product
from catalog.products import dictionary
from catalog.products.dictionary import fields as fields_of
from catalog.settings import Settings
from tests.support import Actors, Catalogue, expect, lifespan

TWO_WAY = {
    "table": "visits",
    "group_by": ["district", "sex"],
    "aggregates": [{"fn": "count"}, {"fn": "avg", "field": "hba1c"}],
}
TWO_WAY_WHERE = {
    **TWO_WAY,
    "where": [
        {"field": "age", "op": "between", "value": [40, 59]},
        {"field": "district", "op": "!=", "value": "Chongming"},
    ],
}
BASELINE = (
    "SELECT district, sex, COUNT(DISTINCT person_id), AVG(hba1c) FROM read_parquet(?) {where}GROUP BY district, sex"
)
BASELINE_WHERE = "WHERE age >= 40 AND age < 60 AND district <> 'Chongming' "


class Capture:
    """Keeps the anonymised SQL (and what it needs to be protected again) of the requests made inside."""

    def __init__(self) -> None:
        self.sql: list[tuple[compiler.Compiled, QueryRequest, Any, dict[str, Any], Any]] = []
        self._original = anonymised_sql.cells

    def __enter__(self) -> Capture:
        def wrapped(q: QueryRequest, table: dict, path: str, reading: Any, decisions: Any, *rest: Any) -> Any:
            compiled = self._original(q, table, path, reading, decisions, *rest)
            self.sql.append((compiled, q, reading, table, decisions))
            return compiled

        anonymised_sql.cells = wrapped  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        anonymised_sql.cells = self._original  # type: ignore[assignment]


def published_file(app: Any, release_id: str, table: str) -> str:
    """The release's one published file of ``table`` in the bench's local store (its key carries
    the file's sha256, which the bench does not hold)."""
    (path,) = Path(app.state.storage.tables_location(release_id)).glob(f"{table}-*.parquet")
    return str(path)


@contextlib.asynccontextmanager
async def marketplace(settings: Settings) -> AsyncIterator[tuple[Litestar, Bench, Any, Any]]:
    """Lode served in process on ``settings``, with a provider and a consumer organisation."""
    app = create_app(settings, run_worker=False)
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=600) as client,
    ):
        actors = Actors(client, app, settings)
        await actors.bootstrap()
        bench = Bench(client, actors, Catalogue(client, actors))
        yield app, bench, await bench.provider(), await bench.consumer()


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


async def speed(rows: int, reps: int, tmp: Path) -> None:
    parquet = tmp / "visits.parquet"
    make_parquet(parquet, rows)
    settings = await prepare(f"sqlite+aiosqlite:///{tmp}/speed.db", tmp / "speed")
    async with marketplace(settings) as (app, bench, owner, consumer):
        l4 = await bench.publish(owner, "L4", parquet)
        licence = await bench.licence_on(l4, owner, consumer)
        published = published_file(app, l4["release_id"], "visits")
        rule = policy.rule("L4")
        noise = app.state.noise

        async def api(body: dict[str, Any]) -> Any:
            return expect(await bench.query(licence["id"], consumer["analyst"], body), 200)

        captured = {}
        for name, body in (("", TWO_WAY), ("-where", TWO_WAY_WHERE)):
            with Capture() as capture:
                answer = await api(body)
            captured[name] = capture.sql[0]
            print(f"  {name or 'plain'}: {len(answer['rows'])} cells released, low-effect {answer['low_effect']}")
        one = duckdb.connect(config={"threads": 1, "memory_limit": settings.query_memory_limit})

        def cells_of(name: str) -> list[dict[str, Any]]:
            compiled = captured[name][0]
            found = one.execute(compiled.sql, compiled.params).fetchall()
            return [dict(zip(compiled.columns, r, strict=True)) for r in found]

        found = {name: cells_of(name) for name in captured}

        def signatures_of(name: str) -> list[tuple[Any, ...]]:
            # With conditions the service scans twice: who each atom would move, then the cells.
            _, q, reading, table, _ = captured[name]
            if not reading.atoms:
                return []
            compiled = anonymised_sql.signatures(q, table, published, reading)
            return one.execute(compiled.sql, compiled.params).fetchall()

        async def anonymised(name: str) -> Any:
            return signatures_of(name), cells_of(name)

        async def baseline(name: str) -> Any:
            sql = BASELINE.format(where=BASELINE_WHERE if name else "")
            return one.execute(sql, [published]).fetchall()

        signed = {name: signatures_of(name) for name in captured}

        async def layers(name: str) -> Any:
            _, q, reading, table, decisions = captured[name]
            if reading.atoms:  # deciding what each cell drops is part of the cost
                limits = anonymiser.thresholds(reading, rule, noise, (l4["release_id"], "visits"))
                columns = anonymised_sql.signatures(q, table, published, reading).columns
                rows = [dict(zip(columns, r, strict=True)) for r in signed[name]]
                decisions = anonymiser.decide(rows, q, reading, limits)
            return anonymiser.protect(
                found[name], q, reading, decisions, rule, noise, (l4["release_id"], "visits"), table
            )

        cases = {}
        for name, body in (("", TWO_WAY), ("-where", TWO_WAY_WHERE)):
            cases[f"api{name}"] = lambda body=body: api(body)
            cases[f"anonymised{name}"] = lambda name=name: anonymised(name)
            cases[f"baseline{name}"] = lambda name=name: baseline(name)
            cases[f"layers{name}"] = lambda name=name: layers(name)
        samples: dict[str, list[float]] = {label: [] for label in cases}
        rng = random.Random(3)
        for rep in range(-2, reps):
            order = list(cases.items())
            rng.shuffle(order)
            for label, call in order:
                started = time.perf_counter()
                await call()
                if rep >= 0:
                    samples[label].append((time.perf_counter() - started) * 1000)
        one.close()
    print(f"  {reps} repetitions, interleaved; p50 in ms")
    for label in cases:
        print(f"  {label:<20}{p50(samples[label]):>10.1f}")
    for name in ("", "-where"):
        api_ms, base_ms = p50(samples[f"api{name}"]), p50(samples[f"baseline{name}"])
        scan, noise_ms = p50(samples[f"anonymised{name}"]), p50(samples[f"layers{name}"])
        label = "with two conditions" if name else "group by district, sex"
        scans = "the two scans" if name else "the scan alone"
        print(
            f"  {label}: api / COUNT(DISTINCT) baseline = {api_ms / base_ms:.2f}× (target ≤ 2×); "
            f"{scans} {scan / base_ms:.2f}×; layers and thresholds {noise_ms:.1f} ms"
        )
    where_cost = p50(samples["anonymised-where"]) - p50(samples["anonymised"])
    base_cost = p50(samples["baseline-where"]) - p50(samples["baseline"])
    print(f"  two conditions' low-effect scan adds {where_cost:+.1f} ms (baseline {base_cost:+.1f} ms)")


# --- utility --------------------------------------------------------------------------------------

# fmt: off
WORKLOADS: dict[str, list[dict[str, Any]]] = {
    "stroke-registry": [
        {"group_by": ["district"], "aggregates": ["count", ("avg", "nihss"), ("avg", "length_of_stay")]},
        {"group_by": ["sex", "stroke_type"], "aggregates": ["count", ("avg", "nihss"), ("avg", "onset_to_door_min")]},
        {"group_by": ["district", "sex"], "aggregates": ["count", ("avg", "length_of_stay")]},
        {"group_by": ["stroke_type", "thrombolysis"], "aggregates": ["count", ("avg", "nihss")]},
        {"group_by": ["district"], "where": [("age", "between", [60, 79])], "aggregates": ["count", ("avg", "nihss")]},
        {"group_by": ["mrs_90d"], "where": [("stroke_type", "=", "I63.9")],
         "aggregates": ["count", ("avg", "length_of_stay")]},
    ],
    "hcc-treatment-cohort": [
        {"group_by": ["district"], "aggregates": ["count", ("avg", "albumin"), ("avg", "survival_months")]},
        {"group_by": ["bclc_stage", "treatment"], "aggregates": ["count", ("avg", "survival_months")]},
        {"group_by": ["sex", "hbv_positive"], "aggregates": ["count", ("avg", "alt"), ("avg", "albumin")]},
        {"group_by": ["treatment"], "where": [("age", "between", [50, 69])],
         "aggregates": ["count", ("avg", "albumin")]},
        {"group_by": ["district", "sex"], "aggregates": ["count", ("avg", "albumin")]},
    ],
}
# fmt: on


def body_of(table: str, spec: dict[str, Any]) -> dict[str, Any]:
    aggregates = [{"fn": a} if isinstance(a, str) else {"fn": a[0], "field": a[1]} for a in spec["aggregates"]]
    where = [{"field": f, "op": op, "value": v} for f, op, v in spec.get("where", [])]
    return {"table": table, "group_by": spec["group_by"], "aggregates": aggregates, "where": where}


def truth(conn: duckdb.DuckDBPyConnection, path: str, table: dict[str, Any], answer: dict, body: dict) -> dict:
    """The true cells of ``body`` as Lode read it (ranges snapped as the answer says), computed directly."""
    person = table["person_key"]
    snapped = {s["condition"]: (s["low"], s["high"]) for s in answer["snapped"]}
    conds, params = [], []
    for i, c in enumerate(body["where"]):
        if f"where.{i}" in snapped:
            conds.append(f'"{c["field"]}" >= ? AND "{c["field"]}" < ?')
            params += list(snapped[f"where.{i}"])
        else:
            conds.append(f'"{c["field"]}" = ?')
            params.append(c["value"])
    groups = ", ".join(f'"{g}"' for g in body["group_by"])
    values = [f'COUNT(DISTINCT "{person}")'] + [f'AVG("{a["field"]}")' for a in body["aggregates"] if a.get("field")]
    where = f"WHERE {' AND '.join(conds)} " if conds else ""
    sql = f"SELECT {groups}, {', '.join(values)} FROM read_parquet(?) {where}GROUP BY {groups}"
    rows = conn.execute(sql, [path, *params]).fetchall()
    n = len(body["group_by"])
    return {tuple(r[:n]): r[n:] for r in rows}


async def utility(tmp: Path) -> None:
    settings = await prepare(f"sqlite+aiosqlite:///{tmp}/utility.db", tmp / "utility")
    errors: list[float] = []
    within: dict[str, list[bool]] = {}
    sds: dict[str, list[float]] = {}  # each released average's noise SD, in units of its precision
    relative: list[bool] = []
    async with marketplace(settings) as (app, bench, owner, consumer):
        conn = duckdb.connect()
        for slug, workload in WORKLOADS.items():
            item = demo_product(slug)
            (table,) = item.tables
            csv = write_product(item, tmp / slug, settings.demo_seed)[table["table"]]
            published = await bench.publish_csv(owner, "L4", table, csv)
            licence = await bench.licence_on(published, owner, consumer)
            path = published_file(app, published["release_id"], table["table"])
            fields = fields_of(table)
            for spec in workload:
                body = body_of(table["table"], spec)
                answer = expect(await bench.query(licence["id"], consumer["analyst"], body), 200)
                true = truth(conn, path, table, answer, body)
                for row, noise_sd in zip(answer["rows"], answer["noise_sd"], strict=True):
                    cell = true[tuple(row[g] for g in body["group_by"])]
                    persons, averages = cell[0], cell[1:]
                    if row["count"] is not None and persons >= 100:
                        errors.append(abs(row["count"] - persons) / persons)
                    averaged = [a for a in body["aggregates"] if a.get("field")]
                    for aggregate, true_avg in zip(averaged, averages, strict=True):
                        name = f"avg_{aggregate['field']}"
                        if row[name] is None or true_avg is None or persons < 100:
                            continue
                        unit = 10.0 ** -dictionary.precision(fields[aggregate["field"]])
                        error = abs(row[name] - true_avg)
                        within.setdefault(f"{slug}.{aggregate['field']}", []).append(error <= unit + 1e-9)
                        sds.setdefault(f"{slug}.{aggregate['field']}", []).append(noise_sd[name] / unit)
                        relative.append(error <= max(unit, 0.01 * abs(true_avg)) + 1e-9)
        conn.close()
    ninetieth = sorted(errors)[int(len(errors) * 0.9)]
    print(f"  counts of cells of ≥ 100 persons: median |relative error| = {statistics.median(errors):.2%} "
          f"over {len(errors)} cells (target ≤ 2 %); 90th percentile {ninetieth:.2%}")  # fmt: skip
    hits = [w for ws in within.values() for w in ws]
    print(f"  averages within the column's precision of the truth: {sum(hits) / len(hits):.1%} of {len(hits)} "
          "(target ≥ 90 %)")  # fmt: skip
    print("    (per column; the median noise SD in units of the precision says why: past 0.61 units (1/1.645),")
    print("    the noise that hides one person's value is wider than the precision the target asks for)")
    for column, ws in within.items():
        sd = statistics.median(sds[column])
        print(f"    {column:<40}{sum(ws) / len(ws):>7.1%} of {len(ws):<5} SD {sd:.2f} units")
    print(f"  averages within the larger of the precision and 1 % of the truth: {sum(relative) / len(relative):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-utility", action="store_true")
    args = parser.parse_args()
    print(command_line(__file__))
    with tempfile.TemporaryDirectory(prefix="lode-l4-bench-") as name:
        tmp = Path(name)
        if not args.skip_utility:
            print("\n== utility: the demo's L4 products, a benign workload")
            asyncio.run(utility(tmp))
        if not args.skip_speed:
            print(f"\n== speed: {args.rows:,} rows")
            asyncio.run(speed(args.rows, args.reps, tmp))


if __name__ == "__main__":
    main()
