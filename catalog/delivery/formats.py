"""A rows answer as a file: the formats offered, and the CSV itself.

``Accept: text/csv`` gives RFC 4180 CSV — a header row of the answer's columns, CRLF line ends,
fields quoted only when they must be; null is an empty field (as is an empty string: CSV cannot
tell them apart; ask for Parquet or JSON when that matters), true/false in lower case, dates as
YYYY-MM-DD, numbers in Python's shortest round-trip form. ``Accept: application/vnd.apache.parquet`` gives a
Parquet file with the release's column types, written by DuckDB (``compiler.run_page_to_parquet``).
Either way the file holds exactly the rows the JSON answer would; what the JSON answer says beside
them travels in headers (``routes.py``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any, Literal

CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"
FileFormat = Literal["csv", "parquet"]
MEDIA_TYPES: dict[FileFormat, str] = {"csv": CSV, "parquet": PARQUET}
EXTENSIONS: dict[FileFormat, str] = {"csv": "csv", "parquet": "parquet"}


def to_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return out.getvalue().encode()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    return value
