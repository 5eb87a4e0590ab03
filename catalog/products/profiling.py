"""The checks of a release's quality report, run on its tables as they are written at publish.

The checks follow Kahn et al.'s harmonised framework, as the OHDSI Data Quality Dashboard uses it:

* **conformance** — values against the declared categories and bounds; codes against the standard
  the column declares (``code_system``: ICD-10 code shape, LOINC check digits, UCUM units that
  parse); the person key present on every row. Types and dates are conformant by construction:
  a value that does not cast to its declared type stops the publish.
* **completeness** — nulls per column; persons of the release with no row in a table; months of
  the product's declared period with no row.
* **plausibility** — dates in the future or before the person's birth; duplicate rows; persons with
  more rows than the dictionary's ``max_rows_per_person``.

Every check is a count: its numerator (the rows or persons that pass), its denominator, the
fraction, and pass or fail against a threshold (the category's default, or a stricter one the
provider sets). No row value ever leaves the profile. The report is computed inside the sandboxed
DuckDB connection that writes the release's Parquet files, reading what was just written, and is
stored with the release, immutable with it.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import duckdb

from catalog.datafiles import quote

MAX_DISTINCT_CODES = 200_000  # a code column with more distinct values than this is checked on its commonest
ICD10 = re.compile(r"^[A-Z][0-9]{2}(\.?[0-9A-Z]{1,4})?$")
BIRTH_FIELDS = ("birth_date", "date_of_birth", "birth_year", "year_of_birth")


def loinc_valid(code: str) -> bool:
    """A LOINC code ``NNNNN-C``: C is the mod-10 check digit of the digits before it."""
    body, dash, check = code.partition("-")
    if not dash or not body.isdigit() or not check.isdigit() or len(check) != 1 or not 1 <= len(body) <= 7:
        return False
    digits = [int(d) for d in reversed(body)]
    total = 0
    for i, digit in enumerate(digits):
        if i % 2 == 0:  # from the right, the 1st, 3rd … digit is doubled (Luhn, as LOINC specifies)
            digit *= 2
            digit = digit // 10 + digit % 10
        total += digit
    return (10 - total % 10) % 10 == int(check)


_UCUM_ATOM = re.compile(
    r"^(10\*|10\^)?[+-]?[0-9]*"  # a factor, or a power of ten
    r"(\[[!-Z\\^-~]+\]|[a-zA-Z%'\"]+)?"  # an atom: a word, %, or a [bracketed] special unit
    r"([+-]?[0-9]+)?"  # an exponent
    r"(\{[^{}]*\})?$"  # an annotation
)


def ucum_parses(unit: str) -> bool:
    """The syntax of a UCUM unit (e.g. ``mmol/L``, ``mg/dL``, ``10*9/L``, ``mL/min/{1.73_m2}``): terms
    joined by ``.`` and ``/``, each a factor, an atom, an exponent and an annotation; no spaces."""
    if not unit or " " in unit or len(unit) > 60:
        return False
    terms = re.split(r"[./](?![^{]*\})", unit.removeprefix("/"))  # not at a dot inside an {annotation}
    return all(term and _UCUM_ATOM.match(term) and term not in ("+", "-") for term in terms)


def code_checker(code_system: str | None) -> tuple[str, Any] | None:
    """The check a code column's declared standard calls for: (its name, a predicate on one code)."""
    system = (code_system or "").strip().upper()
    if system.startswith("ICD-10") or system.startswith("ICD10"):
        return "icd10_shape", lambda code: bool(ICD10.match(code))
    if system == "LOINC":
        return "loinc_check_digit", loinc_valid
    if system == "UCUM":
        return "ucum_parses", ucum_parses
    return None


def _check(
    category: str,
    name: str,
    passed: int,
    total: int,
    threshold: float,
    *,
    persons: int | None,
    k: int,
    **about: Any,
) -> dict[str, Any]:
    """One check. ``persons``: how many persons the failing rows belong to (None where the check
    counts no persons: months). ``masked``: those are fewer than k, so the check's counts are a fact
    about few persons — shown to the owner and the operator only, and left out of every score."""
    fraction = round(passed / total, 6) if total else 1.0
    return {
        "category": category,
        "check": name,
        **about,
        "numerator": passed,
        "denominator": total,
        "failing": total - passed,
        "failing_persons": persons,
        "masked": persons is not None and 0 < persons < k,
        "fraction": fraction,
        "threshold": threshold,
        "passed": fraction >= threshold,
    }


def profile_table(
    conn: duckdb.DuckDBPyConnection,
    path: str,
    table: dict[str, Any],
    *,
    thresholds: dict[str, float],
    today: date,
    period: tuple[date, date] | None,
    k: int,
) -> dict[str, Any]:
    """The checks of one written table (its Parquet file at ``path``), in a few scans."""
    fields = table["fields"]
    person = table["person_key"]
    source = "read_parquet($path)"
    aggregates = ["count(*)"]
    plan: list[tuple[str, str, str, dict[str, Any]]] = []  # (category, check, count expression, about)

    def bad(category: str, name: str, condition: str, **about: Any) -> None:
        plan.append((category, name, condition, about))
        aggregates.append(f"count(*) FILTER (WHERE {condition})")

    for field in fields:
        column = quote(field["name"])
        about = {"column": field["name"]}
        bad("completeness", "not_null", f"{column} IS NULL", **about)
        if field.get("categories"):
            listed = ", ".join(_literal(v) for v in field["categories"])
            bad("conformance", "in_categories", f"{column} IS NOT NULL AND CAST({column} AS VARCHAR) NOT IN ({listed})",
                **about)  # fmt: skip
        if field["type"] in ("integer", "number") and (field.get("min") is not None or field.get("max") is not None):
            low = field.get("min") if field.get("min") is not None else "-'Infinity'::DOUBLE"
            high = field.get("max") if field.get("max") is not None else "'Infinity'::DOUBLE"
            bad("conformance", "within_bounds", f"{column} < {low} OR {column} > {high}", **about)
        if field["type"] == "date":
            bad("plausibility", "not_in_future", f"{column} > DATE '{today.isoformat()}'", **about)
    bad("conformance", "person_key_present", f"{quote(person)} IS NULL", column=person)

    counts = conn.execute(f"SELECT {', '.join(aggregates)} FROM {source}", {"path": path}).fetchone()
    rows, failing = counts[0], counts[1:]
    # Whose rows fail: a second scan, only for the checks that failed at all (a clean table skips it).
    failed = [i for i, n in enumerate(failing) if n and plan[i][1] != "person_key_present"]
    persons = dict.fromkeys(range(len(plan)), 0)
    if failed:
        # A failing row without a person key may be anyone's: it counts as a person of its own.
        key = quote(person)
        conditions = [plan[i][2] for i in failed]
        distinct = [
            f"count(DISTINCT {key}) FILTER (WHERE {c}) + count(*) FILTER (WHERE {key} IS NULL AND ({c}))"
            for c in conditions
        ]
        found = conn.execute(f"SELECT {', '.join(distinct)} FROM {source}", {"path": path}).fetchone()
        persons.update(zip(failed, found, strict=True))
    checks = []
    for i, (category, name, _, about) in enumerate(plan):
        # Rows without a person may each be anyone's: each counts as one person.
        who = failing[i] if name == "person_key_present" else persons[i]
        checks.append(_check(category, name, rows - failing[i], rows, thresholds[category], persons=who, k=k, **about))
    checks += _code_checks(conn, path, table, thresholds, k)
    checks += _row_checks(conn, path, table, rows, thresholds, k)
    if period is not None:
        checks += _coverage(conn, path, fields, period, thresholds, k)
    (persons,) = conn.execute(f"SELECT count(DISTINCT {quote(person)}) FROM {source}", {"path": path}).fetchone()
    return {"rows": rows, "persons": persons, "checks": checks}


def _literal(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _code_checks(
    conn: duckdb.DuckDBPyConnection, path: str, table: dict[str, Any], thresholds: dict[str, float], k: int
) -> list[dict[str, Any]]:
    """Codes checked once per distinct value, in Python (the check digit and the unit grammar
    are no SQL), weighted by how many rows hold each; a column with more distinct values than
    ``MAX_DISTINCT_CODES`` is checked on its commonest, and the check says how many it left out."""
    checks = []
    person = quote(table["person_key"])
    for field in table["fields"]:
        checker = code_checker(field.get("code_system")) if field["type"] == "string" else None
        if checker is None:
            continue
        name, valid = checker
        column = quote(field["name"])
        distinct = conn.execute(
            f"SELECT {column}, count(*) FROM read_parquet($path) WHERE {column} IS NOT NULL "
            f"GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {MAX_DISTINCT_CODES + 1}",
            {"path": path},
        ).fetchall()
        unchecked = max(len(distinct) - MAX_DISTINCT_CODES, 0)
        distinct = distinct[:MAX_DISTINCT_CODES]
        present = sum(n for _, n in distinct)
        invalid = [code for code, _ in distinct if not valid(str(code))]
        failing = sum(n for code, n in distinct if not valid(str(code)))
        persons = 0
        if invalid:
            (persons,) = conn.execute(
                f"SELECT count(DISTINCT {person}) FROM read_parquet($path) WHERE {column} = ANY($codes)",
                {"path": path, "codes": invalid},
            ).fetchone()
        about: dict[str, Any] = {"column": field["name"], "standard": field["code_system"]}
        if unchecked:
            about["codes_left_out"] = f"more than {MAX_DISTINCT_CODES:,} distinct codes: the rarest were not checked"
        checks.append(
            _check("conformance", name, present - failing, present, thresholds["conformance"], persons=persons, k=k,
                   **about)
        )  # fmt: skip
    return checks


def _row_checks(
    conn: duckdb.DuckDBPyConnection, path: str, table: dict[str, Any], rows: int, thresholds: dict[str, float], k: int
) -> list[dict[str, Any]]:
    person = quote(table["person_key"])
    columns = ", ".join(quote(f["name"]) for f in table["fields"])
    duplicates, duplicated_persons, persons, crowded = conn.execute(
        f"""
        WITH repeated AS (SELECT {person} AS p, count(*) AS n FROM read_parquet($path) GROUP BY {columns} HAVING n > 1)
        SELECT
          (SELECT coalesce(sum(n - 1), 0) FROM repeated),
          (SELECT count(DISTINCT p) FROM repeated),
          (SELECT count(DISTINCT {person}) FROM read_parquet($path)),
          (SELECT count(*) FROM (SELECT {person} FROM read_parquet($path) GROUP BY {person}
                                 HAVING count(*) > $most))
        """,
        {"path": path, "most": table["max_rows_per_person"]},
    ).fetchone()
    return [
        _check("plausibility", "no_duplicate_rows", rows - int(duplicates), rows, thresholds["plausibility"],
               persons=duplicated_persons, k=k),
        _check("plausibility", "rows_per_person_within_limit", persons - crowded, persons, thresholds["plausibility"],
               persons=crowded, k=k, limit=table["max_rows_per_person"], unit="persons"),
    ]  # fmt: skip


def _coverage(
    conn: duckdb.DuckDBPyConnection,
    path: str,
    fields: list[dict[str, Any]],
    period: tuple[date, date],
    thresholds: dict[str, float],
    k: int,
) -> list[dict[str, Any]]:
    """Months of the declared period with at least one row, by the table's first date column, and
    the rows of each month (``by_month``: every month of the period, 0 where none)."""
    first = next((f for f in fields if f["type"] == "date"), None)
    if first is None:
        return []
    column = quote(first["name"])
    start, end = period
    found = dict(
        conn.execute(
            f"SELECT strftime(date_trunc('month', {column}), '%Y-%m'), count(*) FROM read_parquet($path) "
            f"WHERE {column} BETWEEN $start AND $end GROUP BY 1",
            {"path": path, "start": start, "end": end},
        ).fetchall()
    )
    months = [f"{year:04d}-{month:02d}" for year, month in _months(start, end)]
    by_month = [{"month": m, "rows": found.get(m, 0)} for m in months]
    covered = sum(1 for m in by_month if m["rows"])
    return [
        _check("completeness", "period_months_covered", covered, len(months), thresholds["completeness"],
               persons=None, k=k, column=first["name"], unit="months", period=[start.isoformat(), end.isoformat()],
               by_month=by_month)
    ]  # fmt: skip


def _months(start: date, end: date) -> list[tuple[int, int]]:
    year, month, out = start.year, start.month, []
    while (year, month) <= (end.year, end.month):
        out.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def release_checks(
    conn: duckdb.DuckDBPyConnection,
    paths: dict[str, str],
    tables: list[dict[str, Any]],
    thresholds: dict[str, float],
    k: int,
) -> dict[str, list[dict[str, Any]]]:
    """Checks across the release's tables: persons with no row in a table, dates before birth."""
    specs = {t["table"]: t for t in tables if t["table"] in paths}
    union = " UNION ".join(
        f"SELECT {quote(t['person_key'])} AS p FROM read_parquet('{_escape(paths[name])}')" for name, t in specs.items()
    )
    (everyone,) = conn.execute(f"SELECT count(DISTINCT p) FROM ({union})").fetchone()
    found: dict[str, list[dict[str, Any]]] = {name: [] for name in specs}
    birth = _birth(specs, paths)
    for name, spec in specs.items():
        person = quote(spec["person_key"])
        (present,) = conn.execute(
            f"SELECT count(DISTINCT {person}) FROM read_parquet('{_escape(paths[name])}')"
        ).fetchone()
        found[name].append(
            _check(
                "completeness",
                "persons_with_rows",
                present,
                everyone,
                thresholds["completeness"],
                persons=everyone - present,
                k=k,
                unit="persons",
            )
        )
        if birth is None:
            continue
        birth_table, birth_field = birth
        born = _birth_expression(birth_field)
        for field in spec["fields"]:
            if field["type"] != "date" or field["name"] == birth_field["name"]:
                continue
            column = quote(field["name"])
            before, dated, persons = conn.execute(
                f"""
                SELECT count(*) FILTER (WHERE r.{column} < b.born), count(*) FILTER (WHERE b.born IS NOT NULL),
                       count(DISTINCT r.{person}) FILTER (WHERE r.{column} < b.born)
                FROM read_parquet('{_escape(paths[name])}') r
                JOIN (SELECT {quote(specs[birth_table]["person_key"])} AS p, min({born}) AS born
                      FROM read_parquet('{_escape(paths[birth_table])}') GROUP BY 1) b ON r.{person} = b.p
                WHERE r.{column} IS NOT NULL
                """
            ).fetchone()
            found[name].append(
                _check("plausibility", "not_before_birth", dated - before, dated, thresholds["plausibility"],
                       persons=persons, k=k, column=field["name"], birth=f"{birth_table}.{birth_field['name']}")
            )  # fmt: skip
    return found


def _birth(specs: dict[str, dict[str, Any]], paths: dict[str, str]) -> tuple[str, dict[str, Any]] | None:
    for name, spec in specs.items():
        for field in spec["fields"]:
            if field["name"] in BIRTH_FIELDS and field["type"] in ("date", "integer"):
                return name, field
    return None


def _birth_expression(field: dict[str, Any]) -> str:
    column = quote(field["name"])
    return column if field["type"] == "date" else f"make_date(CAST({column} AS INTEGER), 1, 1)"


def _escape(path: str) -> str:
    return path.replace("'", "''")
