"""The anonymised reading of a query's ``where`` (L4): conditions split into atoms, ranges snapped.

Each atom gets a noise layer of its own and its own low-effect test (``anonymiser.py``), so the
same condition, however it is spelt, always adds the same noise, and a value that would change an
answer by a handful of persons is treated as absent:

* ``=``, ``!=``, ``is_null``, ``not_null``: one atom each; ``in`` with one value is ``=``;
* ``not_in [a, b]``: the atoms ``!= a`` and ``!= b`` (every one must hold);
* ``in [a, b, …]``: one disjunction whose values are atoms: a row matches when it holds one of them;
* ``between [lo, hi]``: one range atom, snapped to the smallest bucket ``[L, L + W)`` of a grid that
  covers it — W in 1, 2, 5 × 10ⁿ, L a multiple of W, for integer (read as ``[lo, hi + 1)``) and
  number fields (``[lo, hi)``); whole months, W in 1, 2, 3, 6, 12, 24, 60 or 120 counted from year
  0, for dates (``[lo, hi + 1 day)``). A grid makes the ranges an analyst can ask for nest, so two of
  them never differ by a sliver that holds one person.

``<``, ``<=``, ``>`` and ``>=`` are refused before this runs (``validation.py``): a one-sided bound
can be moved until it isolates whoever is at the edge.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import msgspec

from catalog.delivery.schemas import QueryRequest
from catalog.products.dictionary import precision

MONTH_WIDTHS = (1, 2, 3, 6, 12, 24, 60, 120)
_MANTISSAS = (1, 2, 5)


class Atom(msgspec.Struct, frozen=True, kw_only=True):
    path: str  # where the atom was written: "where.2", or "where.2.value.1" for a value of a list
    field: str
    op: str  # "=", "!=", "range", "is_null", "not_null"
    value: Any = None  # the value, or (low, high) of a snapped range
    disjunction: int | None = None  # which in-list the atom is a value of
    position: int = 0  # 1-based place in that list

    @property
    def key(self) -> str:
        """The atom however it was spelt: what its noise layer and its threshold are seeded with."""
        return f"{self.op}|{self.field}|{canonical_value(self.value)}"


class Reading(msgspec.Struct, frozen=True, kw_only=True):
    conjuncts: list[Atom]  # each must hold
    disjunctions: list[list[Atom]]  # in each list one must hold
    snapped: list[tuple[str, list[Any]]]  # (path, [low, high)) of every range, as Lode read it

    @property
    def atoms(self) -> list[Atom]:
        return [*self.conjuncts, *(a for values in self.disjunctions for a in values)]


def read(query: QueryRequest, fields: dict[str, dict[str, Any]]) -> Reading:
    """Atoms of a where that passed ``validation.validate`` (names and values checked there)."""
    conjuncts: dict[str, Atom] = {}
    disjunctions: list[list[Atom]] = []
    snapped: list[tuple[str, list[Any]]] = []
    for i, condition in enumerate(query.where):
        path, field, op, value = f"where.{i}", fields[condition.field], condition.op, condition.value
        name, kind = field["name"], field["type"]
        values = _distinct([_typed(v, kind) for v in value]) if isinstance(value, list) else None
        if op in ("=", "!=", "is_null", "not_null"):
            atom = Atom(path=path, field=name, op=op, value=None if value is None else _typed(value, kind))
            conjuncts.setdefault(atom.key, atom)
        elif op == "not_in" or (op == "in" and len(values) == 1):
            single = "!=" if op == "not_in" else "="
            for j, v in enumerate(values):
                atom = Atom(path=f"{path}.value.{j}" if op == "not_in" else path, field=name, op=single, value=v)
                conjuncts.setdefault(atom.key, atom)
        elif op == "in":
            n = len(disjunctions)
            disjunctions.append(
                [
                    Atom(path=f"{path}.value.{j}", field=name, op="=", value=v, disjunction=n, position=j + 1)
                    for j, v in enumerate(values)
                ]
            )
        else:  # between
            low, high = snap(kind, values[0], values[-1], precision(field))
            snapped.append((path, [plain_value(low), plain_value(high)]))
            atom = Atom(path=path, field=name, op="range", value=(low, high))
            conjuncts.setdefault(atom.key, atom)
    return Reading(conjuncts=list(conjuncts.values()), disjunctions=disjunctions, snapped=snapped)


def count_atoms(query: QueryRequest) -> int:
    """How many atoms a where holds (what ``max_conditions`` limits), before any is merged."""
    return sum(len(c.value) if c.op in ("in", "not_in") and isinstance(c.value, list) else 1 for c in query.where)


# --- ranges ---------------------------------------------------------------------------------------


def snap(kind: str, low: Any, high: Any, decimals: int = 0) -> tuple[Any, Any]:
    """The smallest grid bucket [L, L + W) that covers what ``between [low, high]`` asks for (``low`` ≤
    ``high``, checked by ``validation.py``); no number bucket narrower than ``decimals`` allow.

    A range reaching both sides of zero has no covering bucket on a grid anchored at zero: it is read
    as the smallest ``[-W, W)`` that covers it.
    """
    if kind == "date":
        return _snap_months(low, high)
    unit = Decimal(1) if kind == "integer" else Decimal(1).scaleb(-decimals)
    lo = Decimal(str(low))
    hi = Decimal(str(high)) + (1 if kind == "integer" else 0)
    hi = max(hi, lo + unit)
    if lo < 0 < hi:
        width = _grid_at_least(max(-lo, hi), unit)
        start, end = -width, width
    else:
        width = _grid_at_least(hi - lo, unit)
        start = (lo / width).to_integral_value(rounding="ROUND_FLOOR") * width
        while start + width < hi:  # ends: every step at least doubles the width, and 0 is a bucket edge
            width = _next_grid(width)
            start = (lo / width).to_integral_value(rounding="ROUND_FLOOR") * width
        end = start + width
    if kind == "integer":
        return int(start), int(end)
    return start, end


def _grid_at_least(span: Decimal, unit: Decimal) -> Decimal:
    width = unit
    while width < span:
        width = _next_grid(width)
    return width


def _next_grid(width: Decimal) -> Decimal:
    exponent = width.adjusted()
    mantissa = int((width.scaleb(-exponent)).to_integral_value())
    if mantissa < 2:
        return Decimal(2).scaleb(exponent)
    if mantissa < 5:
        return Decimal(5).scaleb(exponent)
    return Decimal(1).scaleb(exponent + 1)


def _snap_months(low: date, high: date) -> tuple[date, date]:
    first = low.year * 12 + low.month - 1
    after = high + timedelta(days=1)
    last = after.year * 12 + after.month - 1 + (0 if after.day == 1 else 1)  # exclusive, in months
    for width in MONTH_WIDTHS:
        start = first // width * width
        if start + width >= last:
            return _month(start), _month(start + width)
    start = first // MONTH_WIDTHS[-1] * MONTH_WIDTHS[-1]
    span = -(-(last - start) // MONTH_WIDTHS[-1]) * MONTH_WIDTHS[-1]
    return _month(start), _month(start + span)


def _month(index: int) -> date:
    return date(index // 12, index % 12 + 1, 1)


# --- canonical values -----------------------------------------------------------------------------


def _typed(value: Any, kind: str) -> Any:
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if kind in ("integer", "number") and isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(str(value)).normalize() if kind == "number" else value
    return value


def _distinct(values: list[Any]) -> list[Any]:
    seen: dict[str, Any] = {}
    for v in values:
        seen.setdefault(canonical_value(v), v)
    return list(seen.values())


def canonical_value(value: Any) -> str:
    if isinstance(value, float):  # a group value read from the data: 7.0 is the 7 a condition writes
        return format(Decimal(repr(value)).normalize(), "f")
    if isinstance(value, tuple):
        return "[" + ",".join(canonical_value(v) for v in value) + ")"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, date):
        return value.isoformat()
    return json.dumps(value)


def plain_value(value: Any) -> Any:
    """A snapped bound as the answer shows it: a number or an ISO date."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, date):
        return value.isoformat()
    return value
