"""Aggregates at scale: disclosure-controlled aggregates over a 10M-row release against DuckDB's own
``COUNT(DISTINCT person)`` of the same cells, the peak memory of each, and row pages deep into a
large answer (run by hand; prints figures, never passes or fails).

    .venv/bin/python bench/scale_bench.py [--rows 10000000] [--reps 5] [--dir /tmp/lode-scale] [--keep]
                                          [--explain FILE] [--spill-limit 256MB]

**The release.** A ``visits`` table is generated with DuckDB under ``--dir`` (default
/tmp/lode-scale; ≈0.6 GB at 10M rows, deleted at the end unless ``--keep``, which also lets a later
run reuse it): 2–5 visits per person (≈2.9M persons at 10M rows, their rows scattered through the
file), four categorical columns (sex, sixteen districts, ten diagnoses), age, HbA1c, a skewed cost
and a visit date. It is uploaded and published through Lode's own ``Storage.ingest`` and
``Storage.publish`` into a local store, so the file queried is the one delivery reads, hidden
``_lode_rkey`` column included.

**Aggregates.** Each case runs Lode's aggregate step — ``DeliveryService._aggregate`` given the gate
a licensed request would have passed: population check where the rule asks for it, the compiled
cells, disclosure control or L4's anonymisation — on the store's sandbox (``threads=1``, the
default per-query ``memory_limit`` of 1GB or LODE_QUERY_MEMORY_LIMIT, spilling to the store's
``tmp/``), against a plain DuckDB connection with the same settings (``threads=1``, the same
``memory_limit``, a ``temp_directory`` of its own) computing the same cells with
``COUNT(DISTINCT person_id)`` and the same aggregates. Grades: L2 (small-cell suppression, the
default of L1–L3), L3 tightened by a policy file to every control a policy may switch on below L4
(query-set control, dominance, secondary suppression, cell-key perturbation), and L4 (anonymised).
Cases interleave in a shuffled order each repetition; the ratio is of the medians of one run.

**Peak memory.** Each case also runs once alone in a subprocess that does only that query (after a
warm-up of the connection on a one-row query): the peak resident set during the query (``VmHWM``,
reset just before it through ``/proc/self/clear_refs``) and its rise over the resident set then,
and the most bytes in the spill directory, sampled every 20 ms — at the default limit, and for
Lode at ``--spill-limit`` to show it spills rather than fails.

**Pages.** A rows query (one district, 100 rows a page; record-key order, and ordered by HbA1c)
timed at page 1 and at pages 2, 10 and 100 — each page's SQL as ``compiler.rows_sql`` writes it
after the keyset of the page before (found once with OFFSET) — on the sandbox. And, as a what-if,
the same pages on a copy of the file written in record-key order (what ``Storage.publish`` could
write): a record-key page can then skip the row groups wholly before its keyset or past its last row.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import command_line
from catalog import policy
from catalog.delivery import anonymised_sql, compiler, validation
from catalog.delivery.gate import most_rows
from catalog.delivery.noise import Noise
from catalog.delivery.schemas import QueryRequest
from catalog.delivery.service import DeliveryService
from catalog.storage import RECORD_KEY, Storage, TableSpec

RELEASE = "rel_scale"
GENERATOR = 2  # changes whenever generate() does: a kept release of another generator is made again
DISTRICTS = [
    "Huangpu", "Xuhui", "Changning", "Jingan", "Putuo", "Hongkou", "Yangpu", "Minhang",
    "Baoshan", "Jiading", "Pudong", "Jinshan", "Songjiang", "Qingpu", "Fengxian", "Chongming",
]  # fmt: skip
DIAGNOSES = ["E11", "I10", "I63", "J44", "C22", "N18", "F32", "K70", "M54", "Z00"]
TABLE: dict[str, Any] = {
    "table": "visits",
    "person_key": "person_id",
    "max_rows_per_person": 5,
    "fields": [
        {"name": "person_id", "type": "string", "description": "pseudonymous id", "sensitive": True},
        {"name": "age", "type": "integer", "description": "age at visit, years", "min": 0, "max": 120},
        {"name": "sex", "type": "string", "description": "sex", "categories": ["F", "M"]},
        {"name": "district", "type": "string", "description": "Shanghai district", "categories": DISTRICTS},
        {"name": "diagnosis", "type": "string", "description": "ICD-10 category", "categories": DIAGNOSES},
        {"name": "hba1c", "type": "number", "description": "HbA1c, %", "min": 3, "max": 20},
        {"name": "cost", "type": "number", "description": "cost of the visit, CNY", "min": 0, "max": 100000},
        {"name": "visit_date", "type": "date", "description": "date of the visit"},
    ],
}
# Below L4 a policy file may switch on every control disclosure.py has (L4's anonymisation replaces them).
TIGHTENED = """[L3]
query_set_control = true
secondary_suppression = true
perturbation = true
dominance = { n = 2, share = 0.9 }
"""
OLDER = [{"field": "age", "op": ">=", "value": 60}]
MIDDLE = [{"field": "age", "op": "between", "value": [40, 59]}, {"field": "district", "op": "!=", "value": "Chongming"}]
COUNT_AVG = [{"fn": "count"}, {"fn": "avg", "field": "hba1c"}]
# (name, grade, query, the baseline's SQL: the same cells with COUNT(DISTINCT person_id))
CASES: list[tuple[str, str, dict[str, Any], str]] = [
    ("L2 count by district", "L2", {"group_by": ["district"], "aggregates": [{"fn": "count"}]},
     "SELECT district, COUNT(DISTINCT person_id) FROM read_parquet(?) GROUP BY district"),
    ("L2 count, avg by district×sex", "L2", {"group_by": ["district", "sex"], "aggregates": COUNT_AVG},
     "SELECT district, sex, COUNT(DISTINCT person_id), AVG(hba1c) FROM read_parquet(?) GROUP BY district, sex"),
    ("L2 count, sum by diagnosis×district, age≥60", "L2",
     {"group_by": ["diagnosis", "district"], "aggregates": [{"fn": "count"}, {"fn": "sum", "field": "cost"}],
      "where": OLDER},
     "SELECT diagnosis, district, COUNT(DISTINCT person_id), SUM(cost) FROM read_parquet(?) WHERE age >= 60 "
     "GROUP BY diagnosis, district"),
    ("L3+ every control: count, avg, sum by district×sex", "L3",
     {"group_by": ["district", "sex"], "aggregates": [*COUNT_AVG, {"fn": "sum", "field": "cost"}]},
     "SELECT district, sex, COUNT(DISTINCT person_id), AVG(hba1c), SUM(cost) FROM read_parquet(?) "
     "GROUP BY district, sex"),
    ("L3+ every control, age≥60", "L3",
     {"group_by": ["district", "sex"], "aggregates": [*COUNT_AVG, {"fn": "sum", "field": "cost"}], "where": OLDER},
     "SELECT district, sex, COUNT(DISTINCT person_id), AVG(hba1c), SUM(cost) FROM read_parquet(?) WHERE age >= 60 "
     "GROUP BY district, sex"),
    ("L4 count, avg by district×sex", "L4", {"group_by": ["district", "sex"], "aggregates": COUNT_AVG},
     "SELECT district, sex, COUNT(DISTINCT person_id), AVG(hba1c) FROM read_parquet(?) GROUP BY district, sex"),
    ("L4 the same, two conditions", "L4", {"group_by": ["district", "sex"], "aggregates": COUNT_AVG, "where": MIDDLE},
     "SELECT district, sex, COUNT(DISTINCT person_id), AVG(hba1c) FROM read_parquet(?) "
     "WHERE age >= 40 AND age <= 59 AND district <> 'Chongming' GROUP BY district, sex"),
]  # fmt: skip
PAGE_QUERIES = {
    "record-key order": {"select": ["person_id", "age", "hba1c"], "where": [{"field": "district", "op": "=",
                                                                             "value": "Pudong"}]},
    "by hba1c desc": {"select": ["person_id", "age", "hba1c"], "where": [{"field": "district", "op": "=",
                      "value": "Pudong"}], "order_by": [{"field": "hba1c", "direction": "desc"}]},
}  # fmt: skip
PAGES = (2, 10, 100)


def generate(target: Path, rows: int) -> None:
    """``rows`` visits (the same on every run): 2–5 a person, persons' rows scattered through the file."""
    persons = rows * 2 // 7  # 3.5 visits a person on average
    districts = ", ".join(f"'{d}'" for d in DISTRICTS)
    diagnoses = ", ".join(f"'{d}'" for d in DIAGNOSES)
    with duckdb.connect(config={"memory_limit": "4GB", "temp_directory": str(target.parent / "gen-tmp")}) as conn:
        conn.execute("SET preserve_insertion_order = false")
        conn.execute(
            f"""COPY (
                -- One 64-bit hash per person and one per visit, each cut into independent bit fields
                -- (hash(p, k) for several k would share low bits).
                WITH persons AS (SELECT p, hash(p) AS h FROM range({persons}) AS t(p)),
                visits AS (
                    SELECT p, h, hash(p * 8 + v) AS g
                    FROM (SELECT p, h, unnest(range(2 + CAST((h >> 16) % 4 AS INTEGER))) AS v FROM persons)
                )
                SELECT printf('P%08d', p) AS person_id,
                       CAST(18 + (h >> 24) % 72 AS BIGINT) + CAST((g >> 56) % 3 AS BIGINT) AS age,
                       ['F', 'M'][1 + CAST((h >> 1) % 2 AS INTEGER)] AS sex,
                       -- one visit in ten in another district than the person's usual one
                       [{districts}][1 + CAST(CASE WHEN (g >> 44) % 10 = 0 THEN (g >> 48) % 16 ELSE (h >> 8) % 16
                                                  END AS INTEGER)] AS district,
                       [{diagnoses}][1 + CAST(g % 10 AS INTEGER)] AS diagnosis,
                       round(4.0 + ((g >> 8) % 1000) / 100.0, 1) AS hba1c,
                       round(50 + exp(((g >> 20) % 1000) / 120.0), 2) AS cost,
                       DATE '2018-01-01' + CAST((g >> 32) % 2900 AS INTEGER) AS visit_date
                FROM visits ORDER BY hash(g) LIMIT {rows}
            ) TO '{target}' (FORMAT parquet)"""
        )
    shutil.rmtree(target.parent / "gen-tmp", ignore_errors=True)


async def publish(storage: Storage, source: Path) -> dict[str, Any]:
    """Upload and publish ``source`` through the store, as a provider's upload and publish do."""

    async def chunks() -> AsyncIterator[bytes]:
        with source.open("rb") as handle:
            while chunk := await asyncio.to_thread(handle.read, 1 << 20):
                yield chunk

    upload = await storage.ingest(chunks(), release_id=RELEASE, name="visits.parquet", max_bytes=1 << 40)
    spec = TableSpec(upload_key=upload.storage_key, format="parquet", dictionary=TABLE)
    published, _ = await storage.publish(RELEASE, {"visits": spec})
    done = published["visits"]
    return {"rows": done.rows, "persons": done.persons, "bytes": done.bytes, "sha256": done.sha256}


def prepare(args: argparse.Namespace) -> dict[str, Any]:
    """The published release under ``--dir``: made afresh, or reused from a ``--keep`` run of the same size."""
    manifest_path = args.dir / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest["rows"] == args.rows and manifest.get("generator") == GENERATOR:
            print(f"  reusing the release in {args.dir} ({manifest['rows']:,} rows, {manifest['persons']:,} persons)")
            return manifest
    for stale in ("source", "objects", "baseline-tmp"):
        shutil.rmtree(args.dir / stale, ignore_errors=True)
    (args.dir / "source").mkdir(parents=True)
    source = args.dir / "source" / "visits.parquet"
    started = time.perf_counter()
    generate(source, args.rows)
    size = source.stat().st_size / 1e6
    print(f"  generated {args.rows:,} rows ({size:.0f} MB) in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    storage = Storage(args.dir / "objects", work_timeout_s=3600)
    try:
        manifest = asyncio.run(publish(storage, source))
    finally:
        storage.close()
    source.unlink()  # the store holds its own copy of the upload
    print(f"  uploaded and published through Storage in {time.perf_counter() - started:.1f} s: "
          f"{manifest['rows']:,} rows, {manifest['persons']:,} persons, {manifest['bytes'] / 1e6:.0f} MB")  # fmt: skip
    manifest_path.write_text(json.dumps({**manifest, "generator": GENERATOR}))
    return manifest


class Lode:
    """Lode's aggregate step and its row pages, on the store's sandbox."""

    def __init__(self, root: Path, manifest: dict[str, Any], memory_limit: str) -> None:
        self.storage = Storage(root, memory_limit=memory_limit, timeout_s=3600)
        self.tables = {"visits": {"sha256": manifest["sha256"]}}
        self.path = self.storage.table_location(RELEASE, "visits", self.tables)
        self.service = DeliveryService(None, self.storage, None, noise=Noise(b"scale-bench-" + b"n" * 32))  # type: ignore[arg-type]

    def gate(self, grade: str, query: QueryRequest) -> Any:
        """What the gate would hand the work for a licensed request: the release, its product's grade."""
        release = SimpleNamespace(id=RELEASE, version="1", tables=self.tables)
        rows = most_rows(query, TABLE, "aggregate")
        return SimpleNamespace(product=SimpleNamespace(grade=grade), release=release, table=TABLE, rows=rows)

    async def aggregate(self, grade: str, query: QueryRequest) -> Any:
        gate = self.gate(grade, query)
        validation.validate(query, TABLE, policy.rule(grade), "aggregate")
        return await self.service._aggregate(gate, msgspec.structs.replace(query, limit=gate.rows), self.path)

    async def run(self, compiled: compiler.Compiled) -> list[tuple[Any, ...]]:
        return await self.storage.sandbox.run_limited(
            lambda conn: conn.execute(compiled.sql, compiled.params).fetchall(),
            allowed_dir=self.storage.tables_location(RELEASE),
        )

    def close(self) -> None:
        self.storage.close()


def baseline_connection(args: argparse.Namespace, memory_limit: str) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(
        config={"threads": 1, "memory_limit": memory_limit, "temp_directory": str(args.dir / "baseline-tmp")}
    )


def install_policy(args: argparse.Namespace) -> None:
    (args.dir / "policy.toml").write_text(TIGHTENED)
    policy.install(policy.load(args.dir / "policy.toml"))


def query_of(body: dict[str, Any]) -> QueryRequest:
    return msgspec.convert({"table": "visits", **body}, QueryRequest)


class Captured:
    """The compiled statements of the requests made inside: for EXPLAIN ANALYZE."""

    WRAPPED = ((compiler, "aggregate_sql"), (compiler, "population_sql"), (anonymised_sql, "signatures"),
               (anonymised_sql, "cells"))  # fmt: skip

    def __init__(self) -> None:
        self.compiled: list[compiler.Compiled] = []
        self.saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> Captured:
        for module, name in self.WRAPPED:
            original = getattr(module, name)
            self.saved.append((module, name, original))

            def wrapped(*args: Any, _original: Any = original, **kwargs: Any) -> compiler.Compiled:
                self.compiled.append(_original(*args, **kwargs))
                return self.compiled[-1]

            setattr(module, name, wrapped)
        return self

    def __exit__(self, *exc: object) -> None:
        for module, name, original in self.saved:
            setattr(module, name, original)


def median(samples: list[float]) -> float:
    return statistics.median(samples)


async def time_aggregates(args: argparse.Namespace, lode: Lode, limit: str) -> dict[str, tuple[float, float]]:
    base = baseline_connection(args, limit)
    explained: list[str] = []
    samples: dict[tuple[str, str], list[float]] = {}
    queries = {name: query_of(body) for name, _, body, _ in CASES}
    for name, grade, _, sql in CASES:  # one warm-up each, and what it answered
        with Captured() as captured:
            answer = await lode.aggregate(grade, queries[name])
        rows = base.execute(sql, [lode.path]).fetchall()
        print(f"  {name}: {len(answer.rows)} cells ({len(rows)} in DuckDB), {len(answer.suppressed)} suppressed")
        if args.explain:
            explained.append(f"== {name}\n")
            for compiled in captured.compiled:
                plan = base.execute(f"EXPLAIN ANALYZE {compiled.sql}", compiled.params).fetchall()[0][1]
                explained.append(f"-- {compiled.sql}\n{plan}\n")
    if args.explain:
        args.explain.write_text("".join(explained))
        print(f"  EXPLAIN ANALYZE of every compiled statement (on the baseline's connection): {args.explain}")
    rng = random.Random(18)
    cases = [(name, side) for name, *_ in CASES for side in ("lode", "duckdb")]
    by_name = {name: (grade, sql) for name, grade, _, sql in CASES}
    for _ in range(args.reps):
        rng.shuffle(cases)
        for name, side in cases:
            grade, sql = by_name[name]
            started = time.perf_counter()
            if side == "lode":
                await lode.aggregate(grade, queries[name])
            else:
                base.execute(sql, [lode.path]).fetchall()
            samples.setdefault((name, side), []).append(time.perf_counter() - started)
    await time_population(lode, base, args.reps)
    base.close()
    return {name: (median(samples[(name, "lode")]), median(samples[(name, "duckdb")])) for name, *_ in CASES}


async def time_population(lode: Lode, base: duckdb.DuckDBPyConnection, reps: int) -> None:
    """The query-set check's population for the tightened L3 case with a where: counted from the file,
    as the service asks for it now, and with the table's persons bound from the release (publish
    counted them): only the rows the where keeps are read."""
    query = query_of(next(body for name, _, body, _ in CASES if name == "L3+ every control, age≥60"))
    (persons,) = base.execute("SELECT COUNT(DISTINCT person_id) FROM read_parquet(?)", [lode.path]).fetchone()
    counted = compiler.population_sql(query, TABLE, lode.path)
    bound = compiler.population_sql(query, TABLE, lode.path, persons_total=persons)
    samples: dict[str, list[float]] = {"counted": [], "bound": []}
    for _ in range(reps):
        for label, compiled in (("counted", counted), ("bound", bound)):
            started = time.perf_counter()
            answer = await lode.run(compiled)
            samples[label].append(time.perf_counter() - started)
        assert answer[0][1] == persons
    print(f"  query-set population (L3+, age≥60): counted {median(samples['counted']):.2f} s; with the persons the "
          f"release holds bound {median(samples['bound']):.2f} s")  # fmt: skip


async def time_pages(args: argparse.Namespace, lode: Lode) -> dict[tuple[str, str, int], float]:
    """Median seconds of each page's SQL, keyed (file, query, page)."""
    rule = policy.rule("L2")
    sorted_path = Path(lode.path).with_name("visits-by-record-key.parquet")
    with baseline_connection(args, args.limit) as conn:
        # What writing the table in record-key order would add to a publish (same settings as the sandbox).
        copy = "COPY (SELECT * FROM read_parquet(?){}) TO ? (FORMAT parquet)"
        spent = []
        for order in ("", f" ORDER BY {RECORD_KEY}"):
            started = time.perf_counter()
            conn.execute(copy.format(order), [lode.path, str(sorted_path)])
            spent.append(time.perf_counter() - started)
        print(f"  rewriting the file (threads=1, {args.limit}): {spent[0]:.1f} s as published, {spent[1]:.1f} s in "
              "record-key order")  # fmt: skip
        statements: dict[tuple[str, str, int], compiler.Compiled] = {}
        for label, body in PAGE_QUERIES.items():
            query = query_of({**body, "limit": 100})
            for file, path in (("published", lode.path), ("record-key order", str(sorted_path))):
                if file != "published" and "order_by" in body:
                    continue  # record-key order helps only pages in record-key order
                statements[(file, label, 1)] = compiler.rows_sql(query, TABLE, path, rule)
                order = ", ".join([*(f'"{o["field"]}" {o["direction"]} NULLS LAST' for o in body.get("order_by", [])),
                                   f"{RECORD_KEY} ASC"])  # fmt: skip
                keys = ", ".join([*(f'"{o["field"]}"' for o in body.get("order_by", [])), RECORD_KEY])
                for page in PAGES:
                    (after,) = conn.execute(
                        f"SELECT [{keys}] FROM read_parquet(?) WHERE district = 'Pudong' ORDER BY {order} "
                        "LIMIT 1 OFFSET ?",
                        [path, (page - 1) * 100 - 1],
                    ).fetchone()
                    statements[(file, label, page)] = compiler.rows_sql(query, TABLE, path, rule, after=list(after))
    samples: dict[tuple[str, str, int], list[float]] = {key: [] for key in statements}
    rng = random.Random(7)
    order = list(statements)
    for rep in range(-1, args.reps):
        rng.shuffle(order)
        for key in order:
            started = time.perf_counter()
            rows = await lode.run(statements[key])
            if rep >= 0:
                samples[key].append(time.perf_counter() - started)
            assert len(rows) == 101, (key, len(rows))
    sorted_path.unlink()
    return {key: median(values) for key, values in samples.items()}


def measure(args: argparse.Namespace) -> None:
    """Child process: one case, once, alone; prints its seconds, resident set and spill as JSON."""
    manifest = json.loads((args.dir / "manifest.json").read_text())
    install_policy(args)
    _, grade, body, sql = next(c for c in CASES if c[0] == args.measure)
    limit = args.memory_limit
    spill_dir = args.dir / ("objects/tmp" if args.side == "lode" else "baseline-tmp")
    lode = Lode(args.dir / "objects", manifest, limit)
    base = baseline_connection(args, limit)
    base.execute("SELECT 1").fetchall()
    asyncio.run(lode.run(compiler.Compiled(sql="SELECT 1", params=[], columns=["one"])))  # a warm sandbox
    peak_spill = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak_spill
        while not done.wait(0.02):
            size = sum(f.stat().st_size for f in spill_dir.rglob("*") if f.is_file()) if spill_dir.exists() else 0
            peak_spill = max(peak_spill, size)

    watcher = threading.Thread(target=watch, daemon=True)
    # Linux: "5" resets the process's peak resident set (VmHWM) to what it holds now.
    Path("/proc/self/clear_refs").write_text("5")
    rss_before = _status_bytes("VmRSS")
    watcher.start()
    started = time.perf_counter()
    if args.side == "lode":
        asyncio.run(lode.aggregate(grade, query_of(body)))
    else:
        base.execute(sql, [lode.path]).fetchall()
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    peak = _status_bytes("VmHWM")
    print(json.dumps({"seconds": seconds, "rss_before": rss_before, "rss_peak": peak, "spill_peak": peak_spill}))
    lode.close()
    base.close()


def _status_bytes(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) * 1024
    return 0


def measure_in_child(args: argparse.Namespace, case: str, side: str, limit: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--dir", str(args.dir), "--measure", case, "--side", side,
               "--memory-limit", limit]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/lode-scale"))
    parser.add_argument("--keep", action="store_true", help="keep the generated release for a later run")
    parser.add_argument("--explain", type=Path, help="write EXPLAIN ANALYZE of each compiled statement here")
    parser.add_argument("--spill-limit", default="256MB", help="a memory limit under which Lode must spill")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=("lode", "duckdb"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-limit", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(args)
        return
    print(command_line(__file__))
    limit = args.limit = (os.environ.get("LODE_QUERY_MEMORY_LIMIT") or "1GB").replace(" ", "").upper()
    args.dir.mkdir(parents=True, exist_ok=True)
    try:
        manifest = prepare(args)
        install_policy(args)
        lode = Lode(args.dir / "objects", manifest, limit)
        try:
            print(f"\n== Aggregates: Lode's aggregate step vs DuckDB's COUNT(DISTINCT), both threads=1, "
                  f"memory_limit={limit}; {args.reps} repetitions interleaved, medians")  # fmt: skip
            timed = asyncio.run(time_aggregates(args, lode, limit))
            print(f"  {'case':<52}{'Lode s':>8}{'DuckDB s':>10}{'ratio':>8}")
            for name, (ours, theirs) in timed.items():
                print(f"  {name:<52}{ours:>8.2f}{theirs:>10.2f}{ours / theirs:>7.2f}×")
            if not args.skip_pages:
                print(f"\n== Row pages of 100 (district = Pudong, ≈{manifest['rows'] // 16:,} rows), each page's SQL "
                      f"on the sandbox; medians of {args.reps}")  # fmt: skip
                pages = asyncio.run(time_pages(args, lode))
                for file, label in sorted({(f, q) for f, q, _ in pages}, reverse=True):
                    first = pages[(file, label, 1)]
                    deeper = ", ".join(f"page {p} {pages[(file, label, p)] * 1000:.0f} ms "
                                       f"({pages[(file, label, p)] / first:.2f}×)" for p in PAGES)  # fmt: skip
                    print(f"  {label:<18} {file + ' file':<22} page 1 {first * 1000:.0f} ms; {deeper}")
        finally:
            lode.close()
        if not args.skip_memory:
            print("\n== Peak memory: each case alone in a subprocess (peak RSS; its rise over the RSS before the "
                  "query; most bytes spilled)")  # fmt: skip
            runs = [(name, side, limit) for name, *_ in CASES for side in ("lode", "duckdb")]
            runs += [(name, "lode", args.spill_limit) for name, *_ in CASES]
            for name, side, at in runs:
                found = measure_in_child(args, name, side, at)
                label = f"{name} [{side}, {at}]"
                if "error" in found:
                    print(f"  {label:<72} FAILED: {found['error']}")
                    continue
                print(f"  {label:<72} {found['seconds']:>6.2f} s  peak {found['rss_peak'] / 2**20:>6.0f} MiB  "
                      f"+{(found['rss_peak'] - found['rss_before']) / 2**20:>5.0f} MiB  "
                      f"spilled {found['spill_peak'] / 2**20:>5.0f} MiB")  # fmt: skip
    finally:
        if not args.keep:
            for made in ("source", "objects", "baseline-tmp"):
                shutil.rmtree(args.dir / made, ignore_errors=True)
            for made in ("manifest.json", "policy.toml"):
                (args.dir / made).unlink(missing_ok=True)
            if not any(args.dir.iterdir()):
                args.dir.rmdir()


if __name__ == "__main__":
    main()
