"""The data dictionary: its consistency rules, and lookups delivery will use to validate queries.

Every release carries its own dictionary (tables → fields, with the person key, bounds,
categories and ``sensitive`` flags). It is frozen with the release at publish, so it must be
right before then; these checks run on the product's template and on every release's copy.
"""

from __future__ import annotations

from typing import Any

import msgspec

from catalog.errors import FieldError, ValidationFailed
from catalog.products.schemas import DictionaryTable

RESERVED_PREFIX = "_lode"
NUMERIC = ("integer", "number")


def validate(tables: list[DictionaryTable], field: str = "dictionary") -> list[dict[str, Any]]:
    """Return the dictionary as plain data, or raise ValidationFailed naming every problem."""
    errors: list[FieldError] = []
    seen_tables: set[str] = set()
    for t, table in enumerate(tables):
        where = f"{field}.{t}"
        if table.table in seen_tables:
            errors.append(FieldError(f"{where}.table", f"table {table.table!r} appears twice"))
        seen_tables.add(table.table)
        names: set[str] = set()
        for f, column in enumerate(table.fields):
            at = f"{where}.fields.{f}"
            if column.name in names:
                errors.append(FieldError(f"{at}.name", f"field {column.name!r} appears twice"))
            if column.name.lower().startswith(RESERVED_PREFIX):
                errors.append(FieldError(f"{at}.name", "names starting with _lode are reserved"))
            names.add(column.name)
            if (column.min is not None or column.max is not None) and column.type not in NUMERIC:
                errors.append(FieldError(f"{at}.min", "min and max apply to integer and number fields only"))
            if column.min is not None and column.max is not None and column.min > column.max:
                errors.append(FieldError(f"{at}.min", "min is greater than max"))
            if column.categories is not None:
                if column.type not in ("string", "integer"):
                    errors.append(FieldError(f"{at}.categories", "categories apply to string and integer fields"))
                elif any(isinstance(c, int) != (column.type == "integer") for c in column.categories):
                    errors.append(FieldError(f"{at}.categories", f"categories must all be {column.type} values"))
                elif len(set(column.categories)) != len(column.categories):
                    errors.append(FieldError(f"{at}.categories", "categories repeat a value"))
        if table.person_key not in names:
            errors.append(FieldError(f"{where}.person_key", f"{table.person_key!r} is not a field of {table.table}"))
    if errors:
        raise ValidationFailed.of(errors)
    return [msgspec.to_builtins(t) for t in tables]


def table(dictionary: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((t for t in dictionary if t["table"] == name), None)


def fields(table_entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in table_entry["fields"]}


def precision(field: dict[str, Any]) -> int:
    """The decimals a field's released sums and averages keep: declared, or 0 for integers and 2 else."""
    if field.get("precision") is not None:
        return int(field["precision"])
    return 0 if field["type"] == "integer" else 2


def rounded(value: float, places: int) -> float | int:
    """A released value at a field's precision: whole numbers as integers."""
    shown = round(value, places)
    return int(shown) if places == 0 else shown
