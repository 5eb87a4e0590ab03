"""Publish benchmark: what the quality report adds to publishing a 1M-row release (run by hand;
prints figures, never passes or fails). Target: the whole publish with the report ≤ 1.5× without.

    .venv/bin/python bench/quality_bench.py [--rows 1000000] [--reps 3] [--defects]

``--defects`` empties 1 % of the HbA1c values, so the report's second scan (whose rows fail:
the persons behind each failing check) runs too; a clean release skips it.

The release is ``delivery_bench.py``'s visits table (six columns with categories, bounds and a
date; five rows a person) with two code columns added (an ICD-10 diagnosis and a LOINC test, so
the per-code checks run), and a persons table with a birth year (so dates are joined to births),
uploaded as CSV, the form hospitals upload. Each repetition publishes it
twice through ``Storage.publish`` — the DuckDB pass that casts, writes the Parquet file, counts
persons and measures uniqueness — once without profiling and once with the report (per-table
checks, then the release-wide ones), in alternating order; the database's two short transactions
around publish cost the same either way and are left out. The figures are each variant's median.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import date
from functools import partial
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.delivery_bench import TABLE, make_parquet
from catalog.products import profiling, quality
from catalog.storage import Profiler, Storage, TableSpec

VISITS = {
    **TABLE,
    "fields": [
        *TABLE["fields"],
        {"name": "diagnosis", "type": "string", "code_system": "ICD-10"},
        {"name": "loinc", "type": "string", "code_system": "LOINC"},
    ],
}
PERSONS = {
    "table": "persons",
    "person_key": "person_id",
    "max_rows_per_person": 1,
    "fields": [{"name": "person_id", "type": "string"}, {"name": "birth_year", "type": "integer", "min": 1900}],
}


async def chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            yield chunk


async def run(rows: int, reps: int, tmp: Path, defects: bool) -> None:
    parquet = tmp / "visits.parquet"
    make_parquet(parquet, rows)
    csv, persons = tmp / "visits.csv", tmp / "persons.csv"
    codes = "['E11.9', 'I10', 'E78.5', 'N18.3', 'J45.909', 'K21.9']"
    hba1c = "CASE WHEN hash(person_id, visit_date) % 100 = 0 THEN NULL ELSE hba1c END" if defects else "hba1c"
    tests = "['4548-4', '1558-6', '13457-7', '2093-3', '2571-8', '1742-6']"
    duckdb.sql(
        f"COPY (SELECT * REPLACE ({hba1c} AS hba1c), "
        f"{codes}[1 + CAST(hash(person_id, visit_date) % 6 AS INTEGER)] AS diagnosis, "
        f"{tests}[1 + CAST(hash(visit_date, person_id) % 6 AS INTEGER)] AS loinc "
        f"FROM read_parquet('{parquet}')) TO '{csv}' (FORMAT csv, HEADER true)"
    )
    duckdb.sql(
        f"COPY (SELECT DISTINCT person_id, 2018 - age AS birth_year FROM read_parquet('{parquet}')) "
        f"TO '{persons}' (FORMAT csv, HEADER true)"
    )
    storage = Storage(tmp / "objects", memory_limit="2GB")
    thresholds, period = quality.thresholds_for(None), (date(2018, 1, 1), date(2025, 5, 31))
    profiler = Profiler(
        table=partial(profiling.profile_table, thresholds=thresholds, today=date.today(), period=period, k=10),
        release=partial(profiling.release_checks, thresholds=thresholds, k=10),
    )
    timings: dict[str, list[float]] = {"without the report": [], "with the report": []}
    for rep in range(reps):
        order = [None, profiler] if rep % 2 == 0 else [profiler, None]
        for variant in order:
            release = f"rel_bench{rep}{'q' if variant else 'p'}"
            specs = {}
            for table, path, dictionary in (("visits", csv, VISITS), ("persons", persons, PERSONS)):
                stored = await storage.ingest(chunks(path), release_id=release, name=path.name, max_bytes=1 << 34)
                specs[table] = TableSpec(upload_key=stored.storage_key, format="csv", dictionary=dictionary)
            started = time.perf_counter()
            published, across = await storage.publish(release, specs, variant)
            elapsed = time.perf_counter() - started
            timings["with the report" if variant else "without the report"].append(elapsed)
            if variant:
                checks = [c for t in published for c in published[t].quality["checks"] + across[t]]
                failed = sum(not c["passed"] for c in checks)
    without = statistics.median(timings["without the report"])
    with_report = statistics.median(timings["with the report"])
    print(f"publish of {rows:,} rows (CSV, {csv.stat().st_size / 1e6:.0f} MB), median of {reps}:")
    for name, values in timings.items():
        print(f"  {name:<20} {statistics.median(values):7.2f} s   ({', '.join(f'{v:.2f}' for v in values)})")
    print(f"  the report's {len(checks)} checks ({failed} failing) cost {with_report - without:.2f} s")
    print(f"  with / without: {with_report / without:.2f}×  (target ≤ 1.5×)")
    storage.sandbox.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--defects", action="store_true", help="1 % of HbA1c values empty")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lode-quality-bench-") as tmp:
        asyncio.run(run(args.rows, args.reps, Path(tmp), args.defects))


if __name__ == "__main__":
    main()
