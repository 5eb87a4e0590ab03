"""What a provider's data file must look like: its name, its columns and their types.

These rules are pure (no I/O), so releases can check an upload's name before a byte is stored and
compare a file's columns with the dictionary without DuckDB; ``catalog/storage.py`` does the
reading and writing.
"""

from __future__ import annotations

import re

import msgspec

from catalog.errors import ValidationFailed

FORMATS = ("csv", "parquet")
RESERVED_PREFIX = "_lode_"  # columns Lode adds to published tables; a provider may not use it
CANONICAL_TYPES = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "date": "DATE", "boolean": "BOOLEAN"}
MAX_NAME_LENGTH = 128
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_NAME_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
_DECIMAL = re.compile(r"DECIMAL(\(\d+,\s*\d+\))?")
_INTEGER_TYPES = frozenset({
    "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT",
})  # fmt: skip


class ColumnInfo(msgspec.Struct, frozen=True):
    name: str
    type: str  # the DuckDB type name, e.g. BIGINT, VARCHAR, DOUBLE, DATE, BOOLEAN


def parse_file_name(name: str) -> tuple[str, str]:
    """``(table, format)`` for an upload's name, or ValidationFailed on field ``name``."""

    def refuse(message: str) -> ValidationFailed:
        return ValidationFailed.field("name", message)

    if not name:
        raise refuse("must not be empty.")
    if len(name) > MAX_NAME_LENGTH:
        raise refuse(f"must be at most {MAX_NAME_LENGTH} characters.")
    if "/" in name or "\\" in name:
        raise refuse("must not contain path separators.")
    if ".." in name:
        raise refuse("must not contain '..'.")
    if name.startswith("."):
        raise refuse("must not start with '.'.")
    if not _NAME_CHARS.fullmatch(name):
        raise refuse("may contain only ASCII letters, digits, '_', '.' and '-'.")
    stem, dot, extension = name.rpartition(".")
    fmt = extension.lower()
    if not dot or fmt not in FORMATS:
        raise refuse("must end in .csv or .parquet.")
    if not IDENTIFIER.fullmatch(stem):
        raise refuse(f"{stem!r} is not a table name: a letter or '_', then up to 62 letters, digits or '_'.")
    return stem, fmt


def schema_problems(dictionary_table: dict, columns: list[ColumnInfo]) -> list[str]:
    """Every way a file's columns disagree with one dictionary table; empty when they match."""
    table = dictionary_table.get("table", "?")
    fields = dictionary_table.get("fields") or []
    found = {column.name: column.type for column in columns}
    declared = {field["name"] for field in fields}
    problems: list[str] = []
    for field in fields:
        name, kind = field["name"], field["type"]
        if name.startswith(RESERVED_PREFIX):
            problems.append(f"Table {table}: column {name} uses the reserved prefix {RESERVED_PREFIX}.")
        if kind not in CANONICAL_TYPES:
            problems.append(f"Table {table}: column {name} has the unknown type {kind!r}.")
        elif name not in found:
            problems.append(f"Table {table}: column {name} is in the dictionary but not in the file.")
        elif not _fits(kind, found[name]):
            problems.append(f"Table {table}: column {name} is {found[name]} in the file, not {kind}.")
    problems.extend(
        f"Table {table}: column {column.name} is in the file but not in the dictionary."
        for column in columns
        if column.name not in declared
    )
    person_key = dictionary_table.get("person_key")
    if person_key not in declared:
        problems.append(f"Table {table}: the person_key {person_key} is not a column of the dictionary.")
    return problems


def _fits(kind: str, duckdb_type: str) -> bool:
    found = duckdb_type.strip().upper()
    if kind == "integer":
        return found in _INTEGER_TYPES
    if kind == "number":
        return found in _INTEGER_TYPES or found in ("FLOAT", "DOUBLE") or bool(_DECIMAL.fullmatch(found))
    return found == CANONICAL_TYPES[kind]


def quote(identifier: str) -> str:
    """A SQL identifier, quoted for DuckDB."""
    return '"' + identifier.replace('"', '""') + '"'
