"""Differentially private aggregates (grade L5): the Laplace mechanism under pure ε, through OpenDP.

**Privacy unit.** A person, identified by the table's ``person_key``. Neighbouring datasets differ
by adding or removing every row of one person (OpenDP's symmetric distance on rows); replacing a
person's rows by someone else's is two such steps and costs 2ε.

**Bounds.** All bounds come from the data dictionary, never from the data. Each person keeps at
most ``c = max_rows_per_person`` rows after the query's filter (the compiler caps them, and this
module caps again by ``_person`` as a second line); numeric values are clamped to the field's
``[min, max]``; group keys are taken only from the fields' declared ``categories``: the answer has
one row per combination of them (the full cartesian product, in declared order), and rows whose
key is not declared are dropped. Empty groups are released with noise like the others — omitting
them would reveal that nobody (or somebody) in the data has that key, which is exactly what the
noise is meant to hide, and the set of released groups must not depend on the data.

**Aggregates and sensitivity.** The answer is one ε-DP measurement per aggregate over the whole
histogram of groups: with the per-person cap, a person can touch several groups, so groups are not
disjoint and parallel composition does not apply; the L1 sensitivity of the histogram does.

* ``count`` counts *persons* per group (API.md: at L4 and above ``count`` counts persons): each
  person counts once in every group where one of their kept rows falls; with at most ``c`` kept
  rows a person is in at most ``c`` groups, so the L1 sensitivity of the histogram is ``c``.
  ``count(field)`` counts kept rows where the field is not null (rows, not persons), sensitivity
  ``c`` too.
* ``sum(field)``: L1 sensitivity ``c · max(|min|, |max|)``; nulls add nothing.
* ``avg(field)`` = noisy sum / noisy non-null count, each drawn with half of that aggregate's ε
  (the odd micro-ε goes to the sum); ``None`` when the noisy count is ≤ 0, else clamped to
  ``[min, max]`` (post-processing, which costs no privacy).

Noise is Laplace with scale ``b = sensitivity / ε_part``. Counts are integers with discrete
Laplace noise (so already whole numbers); they are left unclipped, hence unbiased and possibly
negative. Sums and averages are floats rounded to 4 decimals.

**ε split.** ``check`` turns the query's ε into integer micro-ε (``policy.MICRO``) and refuses it
above the grade's per-query limit. ``release`` splits it evenly across the requested aggregates
(the remainder, in micro-ε, to the first ones); by sequential composition the answer is
ε-differentially private for the sum of the parts, which is the query's ε exactly.

**Budget.** The caller holds the budget per (consumer organisation, product) across all its
licences and debits ``check``'s value atomically *before* calling ``release``. Once noise has been
drawn the ε is spent, whether or not the answer reaches the analyst: it is never refunded, since a
retried query would otherwise get a fresh draw for free and averaging would remove the noise.

**Residual risks.**

* ε accumulates across queries: every answer adds its ε to the privacy loss, up to the budget;
  the guarantee is for the budget as a whole, not per query.
* The guarantee is only as good as the dictionary. Wrong bounds (a ``max`` below real values only
  biases the answer, but a ``max_rows_per_person`` or person key that does not match reality
  breaks the sensitivity) or categories derived from the data itself weaken it. The capping must
  depend only on each person's own rows.
* Floating point: naive floating-point Laplace noise leaks through its low-order bits
  (Mironov 2012) and floating-point sums can exceed their nominal sensitivity (Casacuberta et al.
  2022). OpenDP samples Laplace noise exactly (discrete Laplace on integers, with exact rational
  arithmetic — CKS20) and checks the privacy map with conservative rounding. This module therefore
  never adds noise to a float: sums are computed in fixed point, each clamped value rounded to a
  multiple of ``q = max(|min|, |max|) / 2^30``, so a sum is an exact integer with sensitivity
  exactly ``c · 2^30`` units; the rounding moves each value by at most ``q / 2`` (data-independent,
  far below the noise) and is undone after the noise.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import opendp.prelude as dp

from catalog.delivery.compiler import NUMERIC
from catalog.delivery.schemas import MAX_GROUPS, QueryRequest
from catalog.errors import FieldError, Forbidden, Unprocessable, ValidationFailed
from catalog.policy import MICRO, GradeRule

dp.enable_features("contrib")

DP_FUNCTIONS = frozenset({"count", "sum", "avg"})
UNITS = 2**30  # fixed-point resolution of a sum: a value of magnitude max(|min|, |max|) is 2^30 units
DECIMALS = 4


class DpAnswer(msgspec.Struct, kw_only=True):
    columns: list[str]
    rows: list[dict[str, Any]]
    epsilon_spent_micro: int


def check(query: QueryRequest, table: dict, rule: GradeRule) -> int:
    """Validate a dp_aggregate query before any data is touched; return the ε to reserve (micro-ε)."""
    if not rule.allows("dp_aggregate"):
        raise Forbidden(
            f"Grade {rule.grade} does not deliver differentially private aggregates.", code="grade_forbids_delivery"
        )
    if query.epsilon is None:
        raise Unprocessable("A differentially private query must name its epsilon.", code="epsilon_required")
    epsilon_micro = round(query.epsilon * MICRO)
    limit = rule.epsilon_per_query_micro
    if limit is not None and epsilon_micro > limit:
        raise Unprocessable(
            f"epsilon {query.epsilon} is above the per-query limit of {limit / MICRO}.",
            code="epsilon_too_large",
            per_query_max=limit / MICRO,
        )
    fields = {f["name"]: f for f in table["fields"]}
    errors: list[FieldError] = []
    if query.select is not None:
        errors.append(FieldError("select", "a differentially private query releases aggregates only"))
    if query.limit is not None or query.order_by:
        # Every group is released (noise included), so a cut could only hide which groups are small.
        at = "limit" if query.limit is not None else "order_by"
        errors.append(FieldError(at, "a differentially private answer is every group; it is not cut or ordered"))
    groups = 1
    for i, name in enumerate(query.group_by):
        field = fields.get(name)
        if field is None:
            errors.append(FieldError(f"group_by.{i}", f"{name!r} is not a field of {table['table']}"))
        elif not field.get("categories"):
            errors.append(FieldError(f"group_by.{i}", f"{name!r} declares no categories to group by"))
        elif name in query.group_by[:i]:
            errors.append(FieldError(f"group_by.{i}", f"{name!r} is repeated"))
        else:
            groups *= len(field["categories"])
    if groups > MAX_GROUPS:
        errors.append(FieldError("group_by", f"{groups} groups is more than {MAX_GROUPS}"))
    if not query.aggregates:
        errors.append(FieldError("aggregates", "name at least one aggregate"))
    seen: set[tuple[str, str | None]] = set()
    for i, agg in enumerate(query.aggregates):
        if agg.fn not in DP_FUNCTIONS or agg.fn not in rule.aggregates:
            raise Forbidden(
                f"Grade {rule.grade} releases only {', '.join(sorted(DP_FUNCTIONS & rule.aggregates))}; not {agg.fn}.",
                code="grade_forbids_delivery",
            )
        if (agg.fn, agg.field) in seen:
            errors.append(FieldError(f"aggregates.{i}", "this aggregate is repeated"))
        seen.add((agg.fn, agg.field))
        field = fields.get(agg.field) if agg.field is not None else None
        if agg.field is not None and field is None:
            errors.append(FieldError(f"aggregates.{i}.field", f"{agg.field!r} is not a field of {table['table']}"))
        elif agg.fn != "count" and (
            field is None or field["type"] not in NUMERIC or field.get("min") is None or field.get("max") is None
        ):
            errors.append(
                FieldError(
                    f"aggregates.{i}.field",
                    f"{agg.fn} needs a numeric field with min and max declared in the dictionary",
                )
            )
    if epsilon_micro < 2 * len(query.aggregates):
        errors.append(FieldError("epsilon", "too small to split across the aggregates"))
    if errors:
        raise ValidationFailed.of(errors)
    return epsilon_micro


def release(query: QueryRequest, table: dict, columns: list[str], rows: list[tuple], epsilon_micro: int) -> DpAnswer:
    """Draw the noisy answer for a query that passed ``check``; spends all of ``epsilon_micro``."""
    fields = {f["name"]: f for f in table["fields"]}
    c = int(table["max_rows_per_person"])
    categories = [list(fields[name]["categories"]) for name in query.group_by]
    combos = list(itertools.product(*categories))
    rows = _cap(rows, columns.index("_person"), c)
    index = _group_index(rows, [columns.index(name) for name in query.group_by], categories)

    n = len(query.aggregates)
    shares = [epsilon_micro // n + (1 if i < epsilon_micro % n else 0) for i in range(n)]
    out_columns = list(query.group_by)
    values: list[list[Any]] = []
    for agg, share in zip(query.aggregates, shares, strict=True):
        out_columns.append(agg.fn if agg.field is None else f"{agg.fn}_{agg.field}")
        if agg.fn == "count":
            if agg.field is None:  # persons, as API.md promises at L4 and above: once per group they appear in
                person_at = columns.index("_person")
                pairs = {(row[person_at], g) for g, row in zip(index, rows, strict=True) if g >= 0}
                kept = [g for _, g in pairs]
            else:
                at = columns.index(agg.field)
                kept = [g for g, row in zip(index, rows, strict=True) if _present(row[at])]
            values.append(_noisy_counts(kept, len(combos), c, share))
            continue
        field = fields[agg.field]
        lo, hi = float(field["min"]), float(field["max"])
        q = max(abs(lo), abs(hi)) / UNITS or 1.0
        at = columns.index(agg.field)
        present = [(g, row[at]) for g, row in zip(index, rows, strict=True) if g >= 0 and _present(row[at])]
        units = [0] * len(combos)
        for g, value in present:
            units[g] += max(-UNITS, min(UNITS, round(min(max(float(value), lo), hi) / q)))
        sum_share = share - share // 2 if agg.fn == "avg" else share
        sums = [s * q for s in _noisy_sums(units, c, sum_share)]
        if agg.fn == "sum":
            values.append([round(s, DECIMALS) for s in sums])
        else:
            counts = _noisy_counts([g for g, _ in present], len(combos), c, share // 2)
            values.append(
                [
                    None if k <= 0 else round(min(max(s / k, lo), hi), DECIMALS)
                    for s, k in zip(sums, counts, strict=True)
                ]
            )
    answer_rows = [
        dict(zip(out_columns, (*combo, *(v[g] for v in values)), strict=True)) for g, combo in enumerate(combos)
    ]
    return DpAnswer(columns=out_columns, rows=answer_rows, epsilon_spent_micro=epsilon_micro)


# --- the pieces ---------------------------------------------------------------------------------


def _present(value: Any) -> bool:
    return value is not None and value == value  # NaN is missing, like null


def _cap(rows: list[tuple], person_at: int, c: int) -> list[tuple]:
    """At most ``c`` rows per person, the first in the order given (the compiler has already capped)."""
    seen: dict[Any, int] = {}
    kept = []
    for row in rows:
        k = seen.get(row[person_at], 0)
        if k < c:
            seen[row[person_at]] = k + 1
            kept.append(row)
    return kept


def _group_index(rows: list[tuple], at: list[int], categories: list[list[Any]]) -> list[int]:
    """Each row's position in the cartesian product of the declared categories; -1 when undeclared."""
    lookups = [{**{str(v): i for i, v in enumerate(cats)}, **{v: i for i, v in enumerate(cats)}} for cats in categories]
    out = []
    for row in rows:
        g = 0
        for a, cats, lookup in zip(at, categories, lookups, strict=True):
            i = lookup.get(row[a])
            if i is None:
                i = lookup.get(str(row[a]), -1) if row[a] is not None else -1
            if i < 0:
                g = -1
                break
            g = g * len(cats) + i
        out.append(g)
    return out


def _noisy_counts(index: list[int], groups: int, c: int, epsilon_micro: int) -> list[int]:
    """Rows per group (undeclared groups dropped) plus discrete Laplace noise; OpenDP's count sees d_in = c."""
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.symmetric_distance()
    histogram = dp.t.make_count_by_categories(*space, categories=list(range(groups)), null_category=False, TOA="i64")
    measurement = _laplace(lambda b: histogram >> dp.m.then_laplace(scale=b), c, epsilon_micro)
    return [int(v) for v in measurement(index)]


def _noisy_sums(units: Sequence[int], c: int, epsilon_micro: int) -> list[int]:
    """Fixed-point sums per group plus discrete Laplace noise; L1 sensitivity c · UNITS."""
    space = dp.vector_domain(dp.atom_domain(T="i64")), dp.l1_distance(T="i64")
    measurement = _laplace(lambda b: dp.m.make_laplace(*space, scale=b), c * UNITS, epsilon_micro)
    return [int(v) for v in measurement(list(units))]


def _laplace(build: Callable[[float], dp.Measurement], d_in: int, epsilon_micro: int) -> dp.Measurement:
    """The measurement with the smallest scale ≥ d_in / ε that OpenDP's privacy map certifies for ε."""
    epsilon = epsilon_micro / MICRO
    scale = d_in / epsilon
    for _ in range(64):
        measurement = build(scale)
        if measurement.check(d_in, epsilon):
            return measurement
        scale = math.nextafter(scale, math.inf)
    raise RuntimeError(f"OpenDP certifies no Laplace scale near {d_in / epsilon} for ε = {epsilon}")  # pragma: no cover
