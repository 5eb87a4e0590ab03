"""A query's answer, with the disclosure Lode applied kept beside the rows, and the analyst's tools.

``to_arrow()``, ``to_pandas()`` and ``to_polars()`` need the ``arrow``, ``pandas`` or ``polars``
extra. The disclosure metadata travels with the table: Arrow schema metadata (``b"lode"``, JSON),
``DataFrame.attrs["lode"]`` for pandas; polars frames carry no metadata, so read it from
``answer.disclosure``.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec


class Answer(msgspec.Struct, kw_only=True, frozen=True):
    release: str
    mode: str
    columns: list[str]
    rows: list[dict[str, Any]]
    suppressed: list[dict[str, Any]] = []
    perturbed: bool = False
    epsilon_spent: float = 0.0
    noise_sd: list[dict[str, float | None]] | None = None
    low_effect: list[dict[str, Any]] = []
    snapped: list[dict[str, Any]] = []
    truncated: bool = False
    next_cursor: str | None = None

    @property
    def disclosure(self) -> dict[str, Any]:
        """What Lode did to the answer before releasing it — keep it with any result you publish."""
        return {
            "release": self.release,
            "mode": self.mode,
            "suppressed": self.suppressed,
            "perturbed": self.perturbed,
            "noise_sd": self.noise_sd,
            "epsilon_spent": self.epsilon_spent,
            "low_effect": self.low_effect,
            "snapped": self.snapped,
            "truncated": self.truncated,
        }

    def __len__(self) -> int:
        return len(self.rows)

    def records(self) -> list[dict[str, Any]]:
        return [{c: row.get(c) for c in self.columns} for row in self.rows]

    def to_arrow(self) -> Any:
        pyarrow = _need("pyarrow", "arrow")
        columns = {c: [row.get(c) for row in self.rows] for c in self.columns}
        table = pyarrow.table(columns) if self.rows else pyarrow.table({c: pyarrow.array([]) for c in self.columns})
        return table.replace_schema_metadata({b"lode": json.dumps(self.disclosure, default=str).encode()})

    def to_pandas(self) -> Any:
        pandas = _need("pandas", "pandas")
        frame = pandas.DataFrame.from_records(self.records(), columns=self.columns)
        frame.attrs["lode"] = self.disclosure
        return frame

    def to_polars(self) -> Any:
        polars = _need("polars", "polars")
        return polars.DataFrame({c: [row.get(c) for row in self.rows] for c in self.columns})


def merge(first: Answer, more: list[Answer]) -> Answer:
    """Pages of one row answer as one answer: the rows in order, the last page's cursor."""
    if not more:
        return first
    rows = [*first.rows, *(row for page in more for row in page.rows)]
    return msgspec.structs.replace(first, rows=rows, next_cursor=more[-1].next_cursor, truncated=more[-1].truncated)


def _need(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(f"{module} is not installed: pip install 'lode-client[{extra}]'") from exc
