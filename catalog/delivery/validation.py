"""Checking a structured query against the release's dictionary and the grade's rule, before any
SQL exists: every problem named at once (400), then a sensitive column (403 ``sensitive_column``),
then an aggregate the grade does not deliver (403 ``grade_forbids_delivery``). What the query's
answer looks like (its mode and output columns) is ``compiler.py``'s, which builds the SQL from a
query that passed here.
"""

from __future__ import annotations

import math
from datetime import date
from typing import Any, get_args

from catalog.delivery import conditions
from catalog.delivery.compiler import NUMERIC, ORDERABLE, hidden_columns, mode_of, output_columns, output_name
from catalog.delivery.schemas import MAX_GROUPS, MAX_ROWS, Fn, Op, QueryRequest
from catalog.errors import FieldError, Forbidden, ValidationFailed
from catalog.policy import GradeRule
from catalog.products.dictionary import fields as fields_of

OPS = frozenset(get_args(Op))
FNS = frozenset(get_args(Fn))
_NEEDS = {"sum": ("a number", NUMERIC), "avg": ("a number", NUMERIC), "min": ("an orderable field", ORDERABLE),
          "max": ("an orderable field", ORDERABLE)}  # fmt: skip
_INT64 = (-(2**63), 2**63 - 1)
RANGED = frozenset({"integer", "number", "date"})
MAX_YEAR = 9000  # a snapped date range may reach up to ten years past its end
MAX_MAGNITUDE = 1e15


def validate(
    query: QueryRequest, table: dict, rule: GradeRule, mode: str, isolating: frozenset[str] = frozenset()
) -> None:
    """400 naming every problem at once, then 403 ``sensitive_column``, 403 ``isolating_column`` (an
    anonymised grade), then 403 ``grade_forbids_delivery``. ``isolating``: the release's columns that
    single persons out."""
    fields = fields_of(table)
    errors: list[FieldError] = []
    used: list[tuple[str, str]] = []  # (path, field name) of every field the query touches

    def known(path: str, name: Any) -> dict | None:
        field = fields.get(name) if isinstance(name, str) else None
        if field is None:
            errors.append(FieldError(path, f"{name!r} is not a column of table {table['table']}"))
        else:
            used.append((path, name))
        return field

    if query.table != table["table"]:
        errors.append(FieldError("table", f"{query.table!r} is not the table being queried"))
    if (mode == "rows") != (mode_of(query) == "rows"):  # aggregate → dp_aggregate is the caller's call
        errors.append(FieldError("body", f"this is a {mode_of(query)} query, not a {mode} query"))
    cap = MAX_ROWS if mode == "rows" else MAX_GROUPS
    if query.limit is not None and (type(query.limit) is not int or not 1 <= query.limit <= cap):
        errors.append(FieldError("limit", f"must be a whole number from 1 to {cap}"))
    for i, condition in enumerate(query.where):
        field = known(f"where.{i}.field", condition.field)
        if condition.op not in OPS:
            errors.append(FieldError(f"where.{i}.op", f"must be one of {', '.join(sorted(OPS))}"))
        elif field is not None:
            errors += _value_errors(f"where.{i}", condition.op, condition.value, field)
    if mode == "rows":
        for i, name in enumerate(query.select or []):
            if known(f"select.{i}", name) is not None and name in query.select[:i]:
                errors.append(FieldError(f"select.{i}", f"{name} is selected twice"))
        if query.epsilon is not None:
            errors.append(FieldError("epsilon", "applies to aggregate queries only"))
    else:
        _validate_aggregates(query, known, errors, mode, rule)
        if rule.anonymisation is not None and mode == "aggregate":
            errors += _anonymised_errors(query, fields, rule)
        if query.cursor is not None:
            errors.append(FieldError("cursor", "continues rows answers only"))
    outputs = output_columns(query, table, rule)
    for i, order in enumerate(query.order_by):
        if order.direction not in ("asc", "desc"):
            errors.append(FieldError(f"order_by.{i}.direction", "must be asc or desc"))
        if order.field not in outputs:
            errors.append(FieldError(f"order_by.{i}.field", f"{order.field!r} is not a column of the answer"))
    if errors:
        raise ValidationFailed.of(errors)

    if not rule.sensitive_columns:
        leaked = [FieldError(p, f"{n} is sensitive") for p, n in used if fields[n].get("sensitive")]
        if mode == "rows" and query.select is None and not output_columns(query, table, rule):
            leaked.append(FieldError("select", "every column of this table is sensitive"))
        if leaked:
            where = ", ".join(e.field for e in leaked)
            raise Forbidden(
                f"Grade {rule.grade} does not deliver sensitive columns ({where}).",
                code="sensitive_column",
                errors=leaked,
            )
    if rule.anonymisation is not None and mode == "aggregate":
        # A value of such a column names a person; a snapped range (or a null test) over it does not.
        valued = {f"where.{i}.field" for i, c in enumerate(query.where) if c.op in ("=", "!=", "in", "not_in")}
        lone = [
            FieldError(p, f"{n} singles persons out: only a between range (snapped to the grid) may use it")
            for p, n in used
            if n in isolating and (p in valued or p.startswith("group_by"))
        ]
        if lone:
            where = ", ".join(e.field for e in lone)
            raise Forbidden(
                f"Grade {rule.grade} does not filter by a value of, or group by, a column that singles persons "
                f"out ({where}); use it in a between range or in aggregates.",
                code="isolating_column",
                errors=lone,
            )
    refused = [
        FieldError(f"aggregates.{i}.fn", f"{a.fn} is not delivered at {rule.grade}")
        for i, a in enumerate(query.aggregates)
        if a.fn not in rule.aggregates
    ]
    if refused:
        allowed = ", ".join(sorted(rule.aggregates))
        raise Forbidden(
            f"Grade {rule.grade} delivers only these aggregates: {allowed}.",
            code="grade_forbids_delivery",
            errors=refused,
        )


def _anonymised_errors(query: QueryRequest, fields: dict, rule: GradeRule) -> list[FieldError]:
    """What an anonymised grade refuses on a query's text alone (never on the data)."""
    assert rule.anonymisation is not None
    errors: list[FieldError] = []
    for i, condition in enumerate(query.where):
        field = fields.get(condition.field) if isinstance(condition.field, str) else None
        if condition.op in ("<", "<=", ">", ">="):
            errors.append(
                FieldError(
                    f"where.{i}.op",
                    f"at {rule.grade} a range is written as between [low, high]; it is read as the grid bucket "
                    "(1, 2 or 5 × 10ⁿ wide; whole months for dates) that covers it",
                )
            )
        elif condition.op == "between" and field is not None and field["type"] in RANGED:
            problem = _range_problem(condition.value, field["type"])
            if problem is not None:
                errors.append(FieldError(f"where.{i}.value", problem))
        elif condition.op == "between" and field is not None and field["type"] not in RANGED:
            errors.append(
                FieldError(f"where.{i}.op", f"between applies to integer, number and date fields at {rule.grade}")
            )
    for i, aggregate in enumerate(query.aggregates):
        if aggregate.fn == "count" and aggregate.field is not None:
            errors.append(
                FieldError(f"aggregates.{i}.field", f"at {rule.grade} count counts persons and takes no field")
            )
    atoms = conditions.count_atoms(query)
    if atoms > rule.anonymisation.max_conditions:
        errors.append(
            FieldError(
                "where",
                f"holds {atoms} conditions; at most {rule.anonymisation.max_conditions} at {rule.grade} "
                "(each value of an in or not_in list counts as one)",
            )
        )
    return errors


def _range_problem(value: Any, kind: str) -> str | None:
    """What an anonymised grade cannot read as a grid bucket: a reversed range, or one out of reach."""
    if not (isinstance(value, list) and len(value) == 2) or any(_value_problem(v, kind) for v in value):
        return None  # the value check names it
    low, high = (date.fromisoformat(v) for v in value) if kind == "date" else value
    if low > high:
        return "between needs [low, high] with low no greater than high"
    if kind == "date" and high.year > MAX_YEAR:
        return f"dates after {MAX_YEAR} are out of range"
    if kind != "date" and max(abs(low), abs(high)) > MAX_MAGNITUDE:
        return f"values beyond ±{MAX_MAGNITUDE:g} are out of range"
    return None


def _validate_aggregates(query: QueryRequest, known: Any, errors: list[FieldError], mode: str, rule: GradeRule) -> None:
    if query.select is not None:
        errors.append(FieldError("select", "applies to rows queries; name group_by fields and aggregates instead"))
    if not query.aggregates:
        errors.append(FieldError("aggregates", "name at least one aggregate"))
    for i, name in enumerate(query.group_by):
        field = known(f"group_by.{i}", name)
        if field is None:
            continue
        if name in query.group_by[:i]:
            errors.append(FieldError(f"group_by.{i}", f"{name} is grouped by twice"))
    names = [output_name(a) for a in query.aggregates]
    for i, aggregate in enumerate(query.aggregates):
        at = f"aggregates.{i}"
        if aggregate.fn not in FNS:
            errors.append(FieldError(f"{at}.fn", f"must be one of {', '.join(sorted(FNS))}"))
            continue
        if aggregate.field is None:
            if aggregate.fn != "count":
                errors.append(FieldError(f"{at}.field", f"{aggregate.fn} needs a field"))
            continue
        field = known(f"{at}.field", aggregate.field)
        if field is None:
            continue
        needs = _NEEDS.get(aggregate.fn)
        if needs is not None and field["type"] not in needs[1]:
            errors.append(
                FieldError(f"{at}.field", f"{aggregate.fn} needs {needs[0]}; {field['name']} is {field['type']}")
            )
        elif mode == "dp_aggregate" and aggregate.field in query.group_by:
            # dp_rows_sql would return the field twice, once clamped; dp.check owns the other DP rules.
            errors.append(FieldError(f"{at}.field", f"{aggregate.field} is also a group_by field"))
    hidden = set(hidden_columns(query, rule))
    errors += [FieldError(f"aggregates.{i}", f"the output column {n} appears twice")
               for i, n in enumerate(names) if n in names[:i] or n in query.group_by]  # fmt: skip
    errors += [FieldError(f"group_by.{i}", f"{n} clashes with a column the answer needs")
               for i, n in enumerate(query.group_by) if n in hidden]  # fmt: skip


def _value_errors(at: str, op: str, value: Any, field: dict) -> list[FieldError]:
    path = f"{at}.value"
    if op in ("is_null", "not_null"):
        return [] if value is None else [FieldError(path, f"{op} takes no value")]
    if op in ("in", "not_in", "between"):
        if not isinstance(value, list) or not value:
            return [FieldError(path, f"{op} needs a non-empty list")]
        if op == "between" and len(value) != 2:
            return [FieldError(path, "between needs a list of two values: [low, high]")]
        values = value
    elif value is None or isinstance(value, list):
        return [FieldError(path, f"{op} needs a single value")]
    else:
        values = [value]
    if op not in ("=", "!=", "in", "not_in") and field["type"] == "boolean":
        return [FieldError(f"{at}.op", f"{op} does not apply to the boolean field {field['name']}")]
    problems = [_value_problem(v, field["type"]) for v in values]
    return [FieldError(path, p) for p in problems if p is not None][:1]


def _value_problem(value: Any, kind: str) -> str | None:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind in NUMERIC:
        if not is_number or (isinstance(value, float) and not math.isfinite(value)):
            return f"{value!r} is not a number, as the {kind} field needs"
        if isinstance(value, int) and not _INT64[0] <= value <= _INT64[1]:
            return f"{value} is out of range"
        return None
    if kind == "date":
        return None if _iso_date(value) else f"{value!r} is not an ISO date (YYYY-MM-DD)"
    if kind == "boolean":
        return None if isinstance(value, bool) else f"{value!r} is not true or false"
    return None if isinstance(value, str) else f"{value!r} is not a string"


def _iso_date(value: Any) -> bool:
    try:
        date.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)
