"""Deterministic synthetic data for the demo releases: one CSV file per dictionary table.

``write_table`` writes a CSV (header row, comma-separated, UTF-8, ISO dates, ``true``/``false``,
no empty cells) whose columns are exactly the table's fields, in order. Values respect the
dictionary (types, ``min``/``max``, ``categories``; dates inside the product's temporal coverage;
at most ``max_rows_per_person`` rows per person) and come from a plausible Shanghai population
(``catalog.demo.synth``). The same seed gives byte-identical files: every value is a hash of
(seed, product, person, row), computed by DuckDB and written in a fixed order.

Persons: a product has ``population_size`` persons, numbered 0 … N-1; each table spreads its rows
over them (at least one row each when the table has at least N rows, skewed so some people have
many visits and most have a few). Persons 0 … r-1 (r between 3 and 8, from the seed) live in
Chongming, which no one else does: a district cell of fewer than 10 persons in every product, so
small-cell suppression has something to show.
"""

from __future__ import annotations

import hashlib
import random
import re
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from catalog.demo.catalog import PRODUCTS, DemoProduct, find_product
from catalog.demo.dictionaries import DECIMALS
from catalog.demo.synth import FIELDS, PROFILES, Ctx, Profile, generic, helpers, lit

FORMAT = "csv"
Layer = list[tuple[str, str]]
DEFAULT_COVERAGE = (date(2018, 1, 1), date(2025, 6, 30))


def write_table(
    product_slug: str,
    table: dict[str, Any],
    rows: int,
    path: Path,
    seed: str,
    *,
    coverage: tuple[date, date] | None = None,
    persons: int | None = None,
) -> None:
    """Write ``rows`` rows of the dictionary ``table`` of product ``product_slug`` to the CSV file ``path``.

    Coverage and population default to the demo product's (``catalog.demo.catalog``); for any
    other slug, to 2018-01-01 … 2025-06-30 and as many persons as the rows need.
    """
    item = find_product(product_slug)
    cap = int(table["max_rows_per_person"])
    if coverage is None:
        tc = item.product.temporal_coverage if item else None
        coverage = (tc.start, tc.end) if tc else DEFAULT_COVERAGE
    if persons is None:
        persons = item.product.population_size if item and item.product.population_size else -(-rows // min(cap, 3))
    if rows > persons * cap:
        raise ValueError(f"{product_slug}.{table['table']}: {rows} rows exceed {persons} persons × {cap}")
    person_key = f"{seed}\x1f{product_slug}"
    row_key = f"{person_key}\x1f{table['table']}"
    fields = {f["name"]: f for f in table["fields"]}
    rare = 3 + int.from_bytes(hashlib.sha256(person_key.encode()).digest()[:4], "big") % 6
    ctx = Ctx(
        person_key=person_key, row_key=row_key, start=coverage[0], end=coverage[1],
        profile=PROFILES.get(product_slug, Profile()), fields=fields, rare=rare,
    )  # fmt: skip
    counts = rows_per_person(persons, rows, cap, random.Random(f"{row_key}\x1fcounts"))
    columns = [_column(ctx, spec, table["person_key"]) for spec in table["fields"]]
    select = ", ".join(f'{expr} AS "{spec["name"]}"' for expr, spec in zip(columns, table["fields"], strict=True))
    per_person, per_row = _layers(helpers(ctx), columns)
    source = "persons"
    for layer in per_person:
        source = f"(SELECT *, {', '.join(f'{expr} AS {name}' for name, expr in layer)} FROM {source})"
    source = f"(SELECT *, unnest(range(n)) AS j FROM {source})"
    for layer in per_row:
        source = f"(SELECT *, {', '.join(f'{expr} AS {name}' for name, expr in layer)} FROM {source})"
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect() as con:
        con.execute("SET enable_progress_bar = false")  # stdout is `lode demo`'s JSON
        con.execute(
            "CREATE TABLE persons AS SELECT CAST(generate_subscripts($1::INTEGER[], 1) - 1 AS BIGINT) AS p, "
            "unnest($1::INTEGER[]) AS n",
            [counts],
        )
        con.execute(
            f"COPY (SELECT {select} FROM {source} ORDER BY pid, p, j) TO {lit(str(path))} (FORMAT csv, HEADER true)"
        )


def rows_per_person(persons: int, rows: int, cap: int, rng: random.Random) -> list[int]:
    """How many rows each person gets: exactly ``rows`` in all, each between 1 and ``cap``.

    With fewer rows than persons, the first ``rows`` persons get one each. Otherwise everyone gets
    one and the rest goes by skewed random weights, capped, with the largest weights taking the
    remainders.
    """
    if rows <= persons:
        return [1] * rows
    counts = [1] * persons
    extra = rows - persons
    weights = [0.05 + rng.random() ** 2 for _ in range(persons)]
    while extra:
        open_ = [i for i in range(persons) if counts[i] < cap]
        total = sum(weights[i] for i in open_)
        given = 0
        for i in open_:
            add = min(cap - counts[i], int(extra * weights[i] / total))
            counts[i] += add
            given += add
        if not given:
            for i in sorted(open_, key=lambda i: -weights[i])[:extra]:
                counts[i] += 1
                given += 1
        extra -= given
    return counts


def write_product(item: DemoProduct, directory: Path, seed: str) -> dict[str, Path]:
    """Write every table of a demo product as ``directory/{table}.csv``; answer table → path."""
    paths = {}
    for table in item.tables:
        path = directory / f"{table['table']}.{FORMAT}"
        write_table(item.slug, table, item.rows[table["table"]], path, seed)
        paths[table["table"]] = path
    return paths


def write_all(directory: Path, seed: str) -> dict[str, dict[str, Path]]:
    """The whole demo data set: ``directory/{product slug}/{table}.csv``."""
    return {item.slug: write_product(item, directory / item.slug, seed) for item in PRODUCTS}


def _layers(latent: list[tuple[str, str]], columns: list[str]) -> tuple[list[Layer], list[Layer]]:
    """The latent variables the columns need, grouped so each is computed once, after those it uses.

    Answers the layers computed once per person (before the rows are spread out) and those computed
    per row. (Within one select, DuckDB inlines an item that uses an earlier alias into every use.)
    """
    uses = {name: {o for o, _ in latent[:i] if re.search(rf"\b{o}\b", expr)} for i, (name, expr) in enumerate(latent)}
    needed = {"pid"} | {name for name, _ in latent if any(re.search(rf"\b{name}\b", c) for c in columns)}
    for name, _ in reversed(latent):
        if name in needed:
            needed |= uses[name]
    per_row: set[str] = set()
    depth: dict[str, int] = {}
    for name, expr in latent:
        if name in needed:
            if re.search(r"\b[jn]\b", expr) or uses[name] & per_row:
                per_row.add(name)
            same = [depth[u] for u in uses[name] if (u in per_row) == (name in per_row)]
            depth[name] = 1 + max(same, default=0)
    stages: tuple[list[Layer], list[Layer]] = ([], [])
    for name, expr in latent:
        if name in depth:
            layers = stages[name in per_row]
            layers.extend([] for _ in range(depth[name] - len(layers)))
            layers[depth[name] - 1].append((name, expr))
    return stages


def _column(ctx: Ctx, spec: dict[str, Any], person_key: str) -> str:
    name, type_ = spec["name"], spec["type"]
    if name == person_key:
        return "pid"
    expr = FIELDS[name](ctx) if name in FIELDS else generic(ctx, spec)
    if type_ in ("integer", "number"):
        lo, hi = spec.get("min"), spec.get("max")
        numeric = [c for c in spec.get("categories") or [] if isinstance(c, int)]
        if numeric:
            lo = min(numeric) if lo is None else max(lo, min(numeric))
            hi = max(numeric) if hi is None else min(hi, max(numeric))
        value = f"round(CAST({expr} AS DOUBLE), {0 if type_ == 'integer' else DECIMALS.get(name, 1)})"
        if lo is not None:
            value = f"greatest({lo}, {value})"
        if hi is not None:
            value = f"least({hi}, {value})"
        return f"CAST({value} AS {'BIGINT' if type_ == 'integer' else 'DOUBLE'})"
    if type_ == "date":
        return f"least(DATE '{ctx.end}', greatest(DATE '{ctx.start}', CAST({expr} AS DATE)))"
    if type_ == "boolean":
        return f"CAST({expr} AS BOOLEAN)"
    return f"CAST({expr} AS VARCHAR)"
