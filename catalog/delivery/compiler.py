"""Structured queries → DuckDB SQL: validated against the release's dictionary, every value bound.

A QueryRequest never becomes SQL text. Identifiers come only from the dictionary (the user's name is
used to *look up* a field, and the dictionary's own name is quoted into the SQL); every value, the
LIMIT, the clamping bounds and the Parquet path are bound ``?`` parameters. A name the dictionary
does not declare is a 400 before any SQL exists (``validation.py`` checks every query first). This
module, ``anonymised_sql.py`` (L4), ``catalog/storage.py`` and ``catalog/sandbox.py`` (its settings)
are the only places that write DuckDB SQL (STYLE rule 2, with the anonymised SQL split out as a seam
of its own); the grade's rule is consulted, never the grade's name.

Semantics a consumer should know:

* rows mode without ``select`` returns every column the grade allows, in dictionary order (at grades
  without sensitive columns, the non-sensitive ones); ``limit`` defaults to 100. Rows come in one
  fixed order — ``order_by``, nulls last, then the hidden record key — so an answer cut at
  ``limit`` continues on the next page (``paging.py``).
* conditions are SQL's: ``!=``, ``not_in``, ``<`` … never match a null; use ``is_null``.
* an aggregate's output column is ``fn`` without a field, else ``f"{fn}_{field}"``. ``count`` without
  a field counts persons at grades with query-set control (the unit ``k`` protects), rows elsewhere;
  ``count`` with a field counts the field's non-null values.
* in aggregate mode ``limit`` is applied after disclosure control (``disclosure.protect``), so the
  control always sees every cell; the SQL itself stops at ``MAX_GROUPS + 1`` cells.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

import duckdb
import msgspec

from catalog.delivery.schemas import MAX_GROUPS, Aggregate, QueryRequest
from catalog.policy import GradeRule
from catalog.products.dictionary import fields as fields_of
from catalog.storage import RECORD_KEY, quote

Mode = Literal["rows", "aggregate", "dp_aggregate"]
DEFAULT_LIMIT = 100
NUMERIC = frozenset({"integer", "number"})
ORDERABLE = frozenset({"integer", "number", "date", "string"})
CELL_COLUMNS = ("_persons", "_rows", "_ckey")
_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_RKEY = quote(RECORD_KEY)
_PAGE = '"_lode_page"'
_CKEY_MODULUS = 4294967296  # a cell key is the sum of its rows' record keys modulo 2**32


class Compiled(msgspec.Struct, frozen=True):
    sql: str
    params: list[Any] | dict[str, Any]  # ? placeholders in order, or $name placeholders by name
    columns: list[str]


def mode_of(query: QueryRequest) -> Mode:
    if query.aggregates or query.group_by:
        return "dp_aggregate" if query.epsilon is not None else "aggregate"
    return "rows"


def output_name(aggregate: Aggregate) -> str:
    return aggregate.fn if aggregate.field is None else f"{aggregate.fn}_{aggregate.field}"


def dominance_depth(rule: GradeRule) -> int:
    """How many top contributors aggregate_sql reports per sum/avg: ``_top1_…`` to ``_top{n}_…``."""
    return max(2, rule.dominance.n if rule.dominance else 2)


def hidden_columns(query: QueryRequest, rule: GradeRule) -> list[str]:
    """The statistics aggregate_sql adds for disclosure control; never shown to a consumer."""
    names = list(CELL_COLUMNS)
    for aggregate in query.aggregates:
        name = output_name(aggregate)
        if aggregate.fn in ("sum", "avg"):
            names += [f"_top{i}_{name}" for i in range(1, dominance_depth(rule) + 1)] + [f"_abs_{name}"]
        if aggregate.fn == "avg":
            names += [f"_sum_{name}", f"_n_{name}"]
    return names


def output_columns(query: QueryRequest, table: dict, rule: GradeRule | None) -> list[str]:
    """What the consumer sees: the selected fields, or the group_by fields then each aggregate's name."""
    if mode_of(query) != "rows":
        return [*query.group_by, *(output_name(a) for a in query.aggregates)]
    if query.select is not None:
        return list(query.select)
    allowed = rule is not None and rule.sensitive_columns
    return [f["name"] for f in table["fields"] if allowed or not f.get("sensitive")]


# --- compiling ------------------------------------------------------------------------------------


def rows_sql(
    query: QueryRequest, table: dict, path: str, rule: GradeRule | None = None, after: list[Any] | None = None
) -> Compiled:
    """A page of the selected rows; without ``select``, every column ``rule`` allows (no rule: no
    sensitive column).

    Ordered as ``paging.py`` describes — ``order_by`` (nulls last), then the hidden record key — and
    at most ``limit`` + 1 rows: the row past the page says the answer was cut. Each row carries its
    record key after the answer's columns (``columns`` ends with ``RECORD_KEY``), for the cursor;
    the caller strips it. ``after`` — the previous page's last row: its ``order_by`` values, then
    its record key — continues the same query from there.
    """
    fields = fields_of(table)
    columns = output_columns(query, table, rule)
    where, params = _where(query, fields)
    if after is not None:
        keyset, values = _after(query, fields, after)
        where = f"{where} AND ({keyset})" if where else f" WHERE {keyset}"
        params += values
    select = ", ".join([*(quoted_field(fields, c) for c in columns), _RKEY])
    sql = f"SELECT {select} FROM read_parquet(?){where} ORDER BY {_page_order(query)} LIMIT ?"
    limit = (query.limit or DEFAULT_LIMIT) + 1
    return Compiled(sql=sql, params=[path, *params, limit], columns=[*columns, RECORD_KEY])


def run_page_to_parquet(
    conn: duckdb.DuckDBPyConnection, query: QueryRequest, page: Compiled, target: str
) -> tuple[list[tuple[Any, ...]], bytes]:
    """Run a rows page (``rows_sql``) and write its answer as Parquet: every row fetched (with its
    record key, as ``run`` answers it), and the file's bytes — the page's rows, in the page's
    order, without the row past the page or the record keys.

    ``conn`` must be a database of the caller's own (``Sandbox.run_limited`` with ``scratch``): the
    page goes through a temporary table, so DuckDB runs the query once for both.
    """
    conn.execute(f"CREATE TEMP TABLE {_PAGE} AS {page.sql}", page.params)
    fetched = conn.execute(f"SELECT * FROM {_PAGE} ORDER BY {_page_order(query)}").fetchall()
    shown = ", ".join(quote(c) for c in page.columns if c != RECORD_KEY)
    kept = min(len(fetched), query.limit or DEFAULT_LIMIT)
    conn.execute(
        f"COPY (SELECT {shown} FROM {_PAGE} ORDER BY {_page_order(query)} LIMIT ?) TO ? (FORMAT parquet)",
        [kept, target],
    )
    with open(target, "rb") as handle:
        return fetched, handle.read()


def _page_order(query: QueryRequest) -> str:
    # order_by names a column of the answer (validation.py), spelt as the dictionary spells it.
    keys = [f"{quote(o.field)} {'DESC' if o.direction == 'desc' else 'ASC'} NULLS LAST" for o in query.order_by]
    return ", ".join([*keys, f"{_RKEY} ASC"])


def _after(query: QueryRequest, fields: dict, last: list[Any]) -> tuple[str, list[Any]]:
    """The rows strictly after ``last`` in ``_page_order``: for some key, equal on every key before
    it and after ``last`` on that one. With nulls last, only a null follows a null, and equals it,
    so a null in ``last`` adds no term of its own; a value is followed by greater ones (smaller,
    descending) and by nulls. The record key is never null."""
    keys = [(quoted_field(fields, o.field), o.direction == "desc", "?") for o in query.order_by]
    # A record key is UBIGINT; a Python int above 2**63 - 1 would otherwise bind as HUGEINT.
    keys.append((_RKEY, False, "CAST(? AS UBIGINT)"))
    terms: list[str] = []
    params: list[Any] = []
    equal: list[str] = []
    equal_params: list[Any] = []
    for (key, descending, mark), value in zip(keys, last, strict=True):
        if value is None:
            equal.append(f"{key} IS NULL")
            continue
        beyond = f"{key} {'<' if descending else '>'} {mark}"
        terms.append(" AND ".join([*equal, f"({beyond} OR {key} IS NULL)" if mark == "?" else beyond]))
        params += [*equal_params, value]
        equal.append(f"{key} = {mark}")
        equal_params.append(value)
    return " OR ".join(f"({t})" for t in terms) or "FALSE", params


def aggregate_sql(query: QueryRequest, table: dict, path: str, rule: GradeRule) -> Compiled:
    """One row per cell: group values, ``_persons``, ``_rows``, ``_ckey``, each aggregate, then the
    hidden statistics the rule's controls read.

    ``_ckey``, the cell key, is null unless the rule perturbs. Each avg carries ``_sum_…`` and
    ``_n_…``, the raw sum and non-null count it is recomputed from. When the rule reads per-person
    totals (dominance or perturbation), each sum/avg also carries ``_top1_…`` … ``_top{n}_…``, the
    largest absolute per-person totals in the cell, and ``_abs_…``, the sum of absolute per-person
    totals (dominance, and the scale of a sum's noise).

    Two shapes, by what the rule reads. Without per-person totals, one GROUP BY of the rows — what
    DuckDB itself does for ``COUNT(DISTINCT person)``. With them, the rows are grouped by cell and
    person once and every cell statistic comes from those per-person partials: one pass, where
    grouping the rows per cell and again per person, then ranking persons with a window, cost 2–3×
    the ``COUNT(DISTINCT)`` on ten million rows (``bench/scale_bench.py``).
    """
    fields = fields_of(table)
    person = quoted_field(fields, table["person_key"])
    groups = [quoted_field(fields, g) for g in query.group_by]
    where, values = _where(query, fields)
    source = f"read_parquet(?){where}"
    summed = list(dict.fromkeys(a.field for a in query.aggregates if a.fn in ("sum", "avg")))
    if summed and (rule.dominance is not None or rule.perturbation):
        inner, names, scans = _cells_from_persons(query, fields, person, groups, source, summed, rule)
    else:
        (inner, names), scans = _cells_from_rows(query, fields, person, groups, source, rule), 1
    columns = [*query.group_by, *names]
    # Group values break ties, so which cells fall past the limit does not vary between runs.
    order = _order(query, columns, tiebreak=tuple(groups))
    sql = f'SELECT * FROM ({inner}) AS "_lode_out"{order} LIMIT ?'
    return Compiled(sql=sql, params=[*[path, *values] * scans, MAX_GROUPS + 1], columns=columns)


def _cells_from_rows(
    query: QueryRequest, fields: dict, person: str, groups: list[str], source: str, rule: GradeRule
) -> tuple[str, list[str]]:
    """The cells' SELECT over the rows themselves, and its columns after the group values."""
    key = f"SUM({_RKEY} % {_CKEY_MODULUS}) % {_CKEY_MODULUS}" if rule.perturbation else "NULL"
    select = {"_persons": f"COUNT(DISTINCT {person})", "_rows": "COUNT(*)", "_ckey": key}
    select |= {output_name(a): _aggregate(a, fields, person, rule) for a in query.aggregates}
    for aggregate in query.aggregates:
        if aggregate.fn == "avg":
            name, column = output_name(aggregate), quoted_field(fields, aggregate.field)
            select |= {f"_sum_{name}": f"SUM({column})", f"_n_{name}": f"COUNT({column})"}
    by = f" GROUP BY {', '.join(groups)}" if groups else ""
    listed = ", ".join([*groups, *(f"{sql} AS {quote(name)}" for name, sql in select.items())])
    return f"SELECT {listed} FROM {source}{by}", list(select)


def _cells_from_persons(
    query: QueryRequest,
    fields: dict,
    person: str,
    groups: list[str],
    source: str,
    summed: list[str],
    rule: GradeRule,
) -> tuple[str, list[str], int]:
    """The cells' SELECT from per-(cell, person) partials, its columns after the group values, and
    how many times it reads ``source``: ``count_distinct`` of a field is no function of per-person
    partials, so it is counted from the rows in a second pass, joined by the group values."""
    partial = {"_lode_p": person, "_lode_n": "COUNT(*)"}  # a person, and their rows in the cell
    if rule.perturbation:
        # Each key modulo 2**32 first: the same sum modulo 2**32, without 128-bit arithmetic per row.
        partial["_lode_k"] = f"SUM({_RKEY} % {_CKEY_MODULUS})"
    for t, name in enumerate(summed):
        column = quoted_field(fields, name)
        partial |= {f"_lode_t{t}": f"SUM({column})", f"_lode_c{t}": f"COUNT({column})"}
    rows = 'COALESCE(SUM("_lode_n"), 0)'
    key = f'SUM("_lode_k") % {_CKEY_MODULUS}' if rule.perturbation else "NULL"
    # A null person key is one group of partials, never a person (COUNT(DISTINCT) skips it too).
    cell = {"_persons": 'COUNT("_lode_p")', "_rows": rows, "_ckey": key}
    from_rows: dict[str, str] = {}
    hidden: dict[str, str] = {}
    depth = dominance_depth(rule)
    for j, aggregate in enumerate(query.aggregates):
        name, fn = output_name(aggregate), aggregate.fn
        column = quoted_field(fields, aggregate.field) if aggregate.field is not None else ""
        if fn == "count_distinct":
            from_rows[name] = f"COUNT(DISTINCT {column})"
        elif aggregate.field is None:  # persons at grades with query-set control, rows elsewhere
            cell[name] = 'COUNT("_lode_p")' if rule.query_set_control else rows
        elif fn == "count":
            partial[f"_lode_x{j}"] = f"COUNT({column})"
            cell[name] = f'COALESCE(SUM("_lode_x{j}"), 0)'
        elif fn in ("min", "max"):
            partial[f"_lode_x{j}"] = f"{fn.upper()}({column})"
            cell[name] = f'{fn.upper()}("_lode_x{j}")'
        else:
            t = summed.index(aggregate.field)
            total, count = f'SUM("_lode_t{t}")', f'COALESCE(SUM("_lode_c{t}"), 0)'
            cell[name] = total if fn == "sum" else f"{total} / NULLIF({count}, 0)"
            # max(x, n): the n largest values, largest first, nulls skipped: a null past the last.
            top = f'max(abs("_lode_t{t}"), {depth})'
            hidden |= {f"_top{i}_{name}": f"{top}[{i}]" for i in range(1, depth + 1)}
            hidden[f"_abs_{name}"] = f'SUM(abs("_lode_t{t}"))'
            if fn == "avg":
                hidden |= {f"_sum_{name}": total, f"_n_{name}": count}
    by = f" GROUP BY {', '.join(groups)}" if groups else ""
    per_person = ", ".join([*groups, *(f"{sql} AS {quote(n)}" for n, sql in partial.items())])
    cells = ", ".join([*groups, *(f"{sql} AS {quote(n)}" for n, sql in (cell | hidden).items())])
    ctes = [
        f'"_lode_pp" AS (SELECT {per_person} FROM {source} GROUP BY {", ".join([*groups, person])})',
        f'"_lode_cells" AS (SELECT {cells} FROM "_lode_pp"{by})',
    ]
    names = [*cell, *from_rows, *hidden]
    if not from_rows:
        return f'WITH {", ".join(ctes)} SELECT * FROM "_lode_cells"', names, 1
    counted = ", ".join([*groups, *(f"{sql} AS {quote(n)}" for n, sql in from_rows.items())])
    ctes.append(f'"_lode_cd" AS (SELECT {counted} FROM {source}{by})')
    # Group values may be null, and a null group is a cell like any other.
    on = " AND ".join(f'"_lode_cells".{g} IS NOT DISTINCT FROM "_lode_cd".{g}' for g in groups) or "TRUE"
    picked = [f'"_lode_cells".{g} AS {g}' for g in groups]
    picked += [f'"_lode_{"cd" if n in from_rows else "cells"}".{quote(n)} AS {quote(n)}' for n in names]
    joined = f'SELECT {", ".join(picked)} FROM "_lode_cells" LEFT JOIN "_lode_cd" ON {on}'
    return f"WITH {', '.join(ctes)} {joined}", names, 2


def population_sql(query: QueryRequest, table: dict, path: str, persons_total: int | None = None) -> Compiled:
    """One row: (persons with a row matching the where, persons in the whole table).

    ``persons_total``, when the caller knows it (publish counts it: the release's ``tables``), is
    bound rather than counted, and only the rows the where keeps are read. Otherwise, with a where,
    each person is grouped once with whether any of their rows matches: one hash table of persons,
    where two ``COUNT(DISTINCT)`` (one filtered) built two (≈2× the time).
    """
    fields = fields_of(table)
    person = quoted_field(fields, table["person_key"])
    where, params = _where(query, fields)
    columns = ["persons_matching", "persons_total"]
    if persons_total is not None and not where:  # the whole table: nothing to read
        return Compiled(sql='SELECT ? AS "persons_matching", ? AS "persons_total"', params=[persons_total] * 2,
                        columns=columns)  # fmt: skip
    if persons_total is not None:
        sql = f'SELECT COUNT(DISTINCT {person}) AS "persons_matching", ? AS "persons_total" FROM read_parquet(?){where}'
        return Compiled(sql=sql, params=[persons_total, path, *params], columns=columns)
    if not where:
        sql = f'SELECT COUNT(DISTINCT {person}) AS "persons_matching", "persons_matching" AS "persons_total" '
        return Compiled(sql=f"{sql}FROM read_parquet(?)", params=[path], columns=columns)
    # bool_or skips a null (unknown) match, as a WHERE does; a null person key is nobody.
    matches = where.removeprefix(" WHERE ")
    persons = f'SELECT {person} AS "_lode_p", bool_or({matches}) AS "_lode_m" FROM read_parquet(?)'
    sql = (
        'SELECT COUNT("_lode_p") FILTER (WHERE "_lode_m") AS "persons_matching", COUNT("_lode_p") AS "persons_total" '
        f"FROM ({persons} GROUP BY {person})"
    )
    return Compiled(sql=sql, params=[*params, path], columns=columns)


def dp_rows_sql(query: QueryRequest, table: dict, path: str) -> Compiled:
    """Each person's first ``max_rows_per_person`` matching rows (by record key), aggregate fields clamped."""
    fields = fields_of(table)
    where, params = _where(query, fields)
    groups = [quoted_field(fields, g) for g in query.group_by]
    measured = list(dict.fromkeys(a.field for a in query.aggregates if a.field is not None))
    bounds: list[Any] = []
    values = []
    for name in measured:
        field, column = fields[name], quoted_field(fields, name)
        clamped = column
        if field.get("min") is not None:
            clamped = f"GREATEST({clamped}, ?)"
            bounds.append(field["min"])
        if field.get("max") is not None:
            clamped = f"LEAST({clamped}, ?)"
            bounds.append(field["max"])
        # GREATEST and LEAST skip nulls, which would turn a missing value into a bound.
        values.append(f"CASE WHEN {column} IS NULL THEN NULL ELSE {clamped} END AS {column}")
    person = quoted_field(fields, table["person_key"])
    inner = ", ".join([*groups, f'{person} AS "_person"', *(quoted_field(fields, m) for m in measured), _RKEY])
    numbered = f'ROW_NUMBER() OVER (PARTITION BY "_person" ORDER BY {_RKEY}) AS "_lode_n"'
    outer = ", ".join([*groups, '"_person"', *values])
    sql = (
        f'WITH "_lode_src" AS (SELECT {inner}, {numbered} FROM read_parquet(?){where}) '
        f'SELECT {outer} FROM "_lode_src" WHERE "_lode_n" <= ?'
    )
    return Compiled(
        sql=sql,
        params=[path, *params, *bounds, table["max_rows_per_person"]],
        columns=[*query.group_by, "_person", *measured],
    )


def run(conn: duckdb.DuckDBPyConnection, compiled: Compiled) -> list[dict[str, Any]]:
    """Execute on a sandboxed connection (``Sandbox.run_limited``) and name each value by its column."""
    rows = conn.execute(compiled.sql, compiled.params).fetchall()
    return [dict(zip(compiled.columns, row, strict=True)) for row in rows]


def quoted_field(fields: dict[str, dict], name: str) -> str:
    # The dictionary's spelling, not the caller's: an unknown name is a KeyError, never SQL.
    return quote(fields[name]["name"])


def _aggregate(aggregate: Aggregate, fields: dict, person: str, rule: GradeRule) -> str:
    if aggregate.field is None:
        return f"COUNT(DISTINCT {person})" if rule.query_set_control else "COUNT(*)"
    column = quoted_field(fields, aggregate.field)
    if aggregate.fn == "count_distinct":
        return f"COUNT(DISTINCT {column})"
    return f"{aggregate.fn.upper()}({column})"


def _where(query: QueryRequest, fields: dict) -> tuple[str, list[Any]]:
    parts: list[str] = []
    params: list[Any] = []
    for condition in query.where:
        field, op, value = fields[condition.field], condition.op, condition.value
        column = quote(field["name"])
        values = [] if op in ("is_null", "not_null") else value if isinstance(value, list) else [value]
        if field["type"] == "date":
            values = [date.fromisoformat(v) for v in values]
        marks = ", ".join("?" for _ in values)
        parts.append({
            "is_null": f"{column} IS NULL",
            "not_null": f"{column} IS NOT NULL",
            "in": f"{column} IN ({marks})",
            "not_in": f"{column} NOT IN ({marks})",
            "between": f"{column} BETWEEN ? AND ?",
        }.get(op) or f"{column} {_SQL_OPS[op]} ?")  # fmt: skip
        params += values
    return (" WHERE " + " AND ".join(f"({p})" for p in parts) if parts else ""), params


def _order(query: QueryRequest, columns: list[str], tiebreak: tuple[str, ...] = ()) -> str:
    keys = [
        f"{quote(o.field)} {'DESC' if o.direction == 'desc' else 'ASC'}" for o in query.order_by if o.field in columns
    ]
    keys += tiebreak
    return f" ORDER BY {', '.join(keys)}" if keys else ""
