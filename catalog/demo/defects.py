"""Realistic defects planted in one demo release, so its quality report has something to show.

The demo's generator writes clean data (``tests/test_demo_data.py`` holds it to that); what a real
hospital extract would carry is added here, after writing and before upload, to the routine
laboratory results only: results missing (about 2 %), a LOINC code with a wrong check digit,
duplicated rows and results past the dictionary's bound. Their sizes are fixed, so the report
the README describes is the same on every run.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

DEFECTS: dict[tuple[str, str], dict[str, int]] = {
    ("chronic-lab-results", "results"): {
        "missing_result_every": 50,  # every 50th row loses its result: 2 % missing
        "invalid_code_rows": 40,  # LOINC 4548-5: HbA1c's code with a wrong check digit
        "duplicate_rows": 25,
        "out_of_range_rows": 30,  # a result of 99,999 against the bound of 5,000
    },
}


def plant(product_slug: str, paths: dict[str, Path]) -> None:
    """Rewrite the CSV files of ``product_slug`` that have defects listed, in place."""
    for (slug, table), sizes in DEFECTS.items():
        if slug == product_slug and table in paths:
            _plant_results(paths[table], sizes)


def _plant_results(path: Path, sizes: dict[str, int]) -> None:
    staged = path.with_suffix(".defects.csv")
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")  # stdout is `lode demo`'s JSON
        con.execute("SET preserve_insertion_order = true")
        con.execute(
            "CREATE TABLE t AS SELECT *, row_number() OVER () AS n FROM read_csv(?, header = true)", [str(path)]
        )
        con.execute("UPDATE t SET result = NULL WHERE n % ? = 0", [sizes["missing_result_every"]])
        con.execute(
            "UPDATE t SET loinc_code = '4548-5' WHERE n % 1000 = 7 AND n <= ? * 1000", [sizes["invalid_code_rows"]]
        )
        con.execute("UPDATE t SET result = 99999 WHERE n % 1000 = 13 AND n <= ? * 1000", [sizes["out_of_range_rows"]])
        con.execute(
            "INSERT INTO t SELECT * FROM t WHERE n % 1000 = 21 AND n <= ? * 1000",
            [sizes["duplicate_rows"]],
        )
        con.execute(f"COPY (SELECT * EXCLUDE (n) FROM t ORDER BY n) TO '{staged}' (FORMAT csv, HEADER true)")
    staged.replace(path)
