"""Statistical disclosure control for aggregate answers, driven only by the grade's rule.

Every aggregate answer of a grade without anonymisation (L1–L3) passes through ``protect`` before it
leaves Lode; which controls run is read from the ``GradeRule`` (never from the grade's name), so an
operator who tightens the policy tightens them here too. By default only small-cell suppression
runs; controls 1, 3, 4 and 5 are what L4 used before its anonymisation (``anonymiser.py``) replaced
them, and what a policy file may still switch on below L4. In the order they run:

1. **Query-set-size control** (``rule.query_set_control``), before any cell is
   computed: the persons a query's ``where`` selects, and the persons it leaves out when there are
   any, must each number at least ``k``. Otherwise a narrow filter (or its complement, "everyone
   but them", subtracted from a whole-table answer) describes a handful of people. A query without a
   ``where`` covers the whole table and has no complement. Refused with 422 ``query_set_too_small``.
2. **Small-cell suppression** (every grade): a cell of fewer than ``k`` persons releases no value;
   it is listed in ``suppressed`` with reason ``small_cell`` (its group values stay visible).
3. **Dominance** (``rule.dominance``; e.g. n = 2, share = 0.9): a sum or average whose ``n``
   largest per-person totals make up at least ``share`` of the cell's absolute total would tell
   those few people roughly what the others hold; that column is suppressed (``dominance``).
4. **Secondary suppression** (``rule.secondary_suppression``): a suppressed value must not be
   recoverable as a margin total minus the released cells. Each line of the group_by table (one
   field: the whole column; two fields: each row and each column; more: every line along one
   field) is a margin whose total another query can ask for. Where exactly one cell of a margin is
   suppressed in a column, the smallest other cell (fewest persons) is suppressed too (``secondary``),
   until no margin has a lone suppression. A one-cell answer needs nothing more.
5. **Cell-key perturbation** (``rule.perturbation``): every released count and sum gets noise
   looked up from the cell key, a number derived from the hidden record keys of the rows that
   contribute (``compiler.aggregate_sql``'s ``_ckey``), so the same contributors always get the same
   noise and asking again, or asking for the same cell another way, gives the same answer — noise
   cannot be averaged away by repetition. Counts (and ``count_distinct``) move by a step from
   ``COUNT_NOISE`` (−2…+2; variance 1.2); in a cell below 2·k persons from ``SMALL_CELL_NOISE``,
   which has no zero, so a small released count is never exact. A count is never released below 0.
   A sum moves by such a step times ``SUM_NOISE_FRACTION`` (¼) of the cell's largest per-person
   total, so at most half of the biggest contribution: enough to blur whether one person is in the
   cell, bounded so the total stays useful. Integer sums stay integers. An average is recomputed
   as the perturbed sum of its field divided by the perturbed count of the field's non-null values
   — exactly what ``sum_<field>`` and ``count_<field>`` release for the same cell — so average ×
   count gives back the released sum (up to rounding to the column's precision), never the true
   count. ``min`` and ``max`` are not perturbed
   (a grade that perturbs should deliver only count, sum and avg). The answer says ``perturbed: true``.

Rows hold only the answer's columns (group_by fields, then aggregate names); the hidden statistics
never leave. Rows are ordered by ``order_by`` on the *released* values (group values break ties),
then cut to ``limit`` — ordering on true values would leak what suppression and noise hide.

Residual risk: differencing across many queries is reduced, not eliminated. Two allowed queries
whose populations differ by a few persons can still be subtracted; query-set-size control stops the
narrowest such pairs and perturbation makes every difference noisy (each answer is off by up to two
persons, or half a large contribution), so an attacker learns a range, not a value — but a patient
attacker combining many overlapping queries can narrow it. Hence the contractual and audit
controls (named analysts, no-re-identification terms, every query logged) that come with the grade.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from itertools import accumulate
from typing import Any

import msgspec

from catalog.delivery.compiler import output_name
from catalog.delivery.schemas import Aggregate, QueryRequest, Suppressed
from catalog.errors import Unprocessable
from catalog.policy import Dominance, GradeRule
from catalog.products import dictionary

# (step, probability); symmetric, so perturbation adds no bias.
COUNT_NOISE = ((-2, 0.1), (-1, 0.2), (0, 0.4), (1, 0.2), (2, 0.1))
SMALL_CELL_NOISE = ((-2, 0.2), (-1, 0.3), (1, 0.3), (2, 0.2))
SUM_NOISE_FRACTION = 0.25
REASONS = ("small_cell", "dominance", "secondary")


def _cumulative(table: tuple[tuple[int, float], ...]) -> list[tuple[int, float]]:
    return list(zip((step for step, _ in table), accumulate(p for _, p in table), strict=True))


_COUNT_STEPS = _cumulative(COUNT_NOISE)
_SMALL_STEPS = _cumulative(SMALL_CELL_NOISE)


class Protected(msgspec.Struct):
    rows: list[dict[str, Any]]
    suppressed: list[Suppressed]
    perturbed: bool


def check_query_set(persons_matching: int, persons_total: int, has_where: bool, rule: GradeRule) -> None:
    """422 ``query_set_too_small`` when the query's population or its non-empty complement is under k."""
    if not rule.query_set_control:
        return
    complement = persons_total - persons_matching if has_where else 0
    if persons_matching < rule.k or 0 < complement < rule.k:
        # The counts themselves stay out of the message: they are what is being protected.
        raise Unprocessable(
            f"The persons this query selects, or the persons it leaves out, number fewer than {rule.k}; "
            "widen the where or drop it.",
            code="query_set_too_small",
        )


def protect(
    cells: list[dict[str, Any]], query: QueryRequest, rule: GradeRule, decimals: dict[str, int] | None = None
) -> Protected:
    """The cells of ``compiler.aggregate_sql`` made safe to release under ``rule``; a perturbed sum or
    average is rounded to ``decimals[field]`` (the dictionary's precision, ``dictionary.precision``)."""
    groups = list(query.group_by)
    names = [output_name(a) for a in query.aggregates]
    marks: list[dict[str, str]] = [{} for _ in cells]  # per cell: suppressed column → reason
    for cell, mark in zip(cells, marks, strict=True):
        if cell["_persons"] < rule.k:
            mark.update(dict.fromkeys(names, "small_cell"))
        elif rule.dominance is not None:
            for aggregate, name in zip(query.aggregates, names, strict=True):
                if aggregate.fn in ("sum", "avg") and _dominated(cell, name, rule.dominance):
                    mark[name] = "dominance"
    if rule.secondary_suppression and groups:
        _suppress_secondary(cells, marks, groups, names)

    answers: list[tuple[dict[str, Any], list[Suppressed]]] = []
    for cell, mark in zip(cells, marks, strict=True):
        row = {g: cell[g] for g in groups}
        for aggregate, name in zip(query.aggregates, names, strict=True):
            if name in mark:
                row[name] = None
            else:
                row[name] = _perturb(cell, aggregate, name, rule) if rule.perturbation else cell[name]
                if rule.perturbation and aggregate.fn in ("sum", "avg") and row[name] is not None and decimals:
                    row[name] = dictionary.rounded(row[name], decimals.get(aggregate.field or "", 2))
        notes = [
            Suppressed(group={g: cell[g] for g in groups}, columns=columns, reason=reason)
            for reason in REASONS
            if (columns := [n for n in names if mark.get(n) == reason])
        ]
        answers.append((row, notes))

    answers = order_and_cut(answers, query)
    return Protected(
        rows=[row for row, _ in answers],
        suppressed=[note for _, notes in answers for note in notes],
        perturbed=rule.perturbation,
    )


def order_and_cut(answers: list[tuple[dict[str, Any], Any]], query: QueryRequest) -> list[tuple[dict[str, Any], Any]]:
    """(row, notes) pairs ordered by ``order_by`` on the *released* values, group values breaking ties,
    then cut to ``limit`` — ordering on true values would leak what suppression and noise hide."""
    keys = [(o.field, o.direction == "desc") for o in query.order_by] + [(g, False) for g in query.group_by]
    for field, descending in reversed(keys):
        # Stable sorts from the last key to the first; nulls last either way, as DuckDB orders them.
        present = [a for a in answers if a[0][field] is not None]
        present.sort(key=lambda a, f=field: a[0][f], reverse=descending)
        answers = present + [a for a in answers if a[0][field] is None]
    return answers[: query.limit] if query.limit is not None else answers


def _dominated(cell: dict[str, Any], name: str, dominance: Dominance) -> bool:
    largest = [cell.get(f"_top{i}_{name}") or 0 for i in range(1, dominance.n + 1)]
    return dominance.holds(largest, cell.get(f"_abs_{name}") or 0)


def _suppress_secondary(
    cells: list[dict[str, Any]], marks: list[dict[str, str]], groups: list[str], names: list[str]
) -> None:
    margins: list[list[int]] = []
    for d in range(len(groups)):
        lines: dict[tuple, list[int]] = defaultdict(list)
        for i, cell in enumerate(cells):
            lines[tuple(cell[g] for j, g in enumerate(groups) if j != d)].append(i)
        margins += [line for line in lines.values() if len(line) > 1]

    def size(i: int) -> tuple:
        # Fewest persons first; the group values make the choice independent of the cells' order.
        cell = cells[i]
        return (cell["_persons"], cell["_rows"], tuple((cell[g] is None, str(cell[g])) for g in groups))

    changed = True
    while changed:  # marks only grow, so this ends
        changed = False
        for name in names:
            for margin in margins:
                if sum(name in marks[i] for i in margin) == 1:
                    partner = min((i for i in margin if name not in marks[i]), key=size)
                    marks[partner][name] = "secondary"
                    changed = True


def _perturb(cell: dict[str, Any], aggregate: Aggregate, name: str, rule: GradeRule) -> Any:
    raw = cell[name]
    if raw is None:
        return None
    small = cell["_persons"] < 2 * rule.k
    ckey = cell["_ckey"] or 0
    if aggregate.fn in ("count", "count_distinct"):
        return _noisy_count(raw, ckey, name, small)
    if aggregate.fn == "sum":
        return _noisy_sum(raw, ckey, name, cell.get(f"_top1_{name}"), small)
    if aggregate.fn == "avg":
        # The same keys sum_<field> and count_<field> use, so the three released values agree.
        total = _noisy_sum(cell[f"_sum_{name}"], ckey, f"sum_{aggregate.field}", cell.get(f"_top1_{name}"), small)
        count = _noisy_count(cell[f"_n_{name}"], ckey, f"count_{aggregate.field}", small)
        return None if total is None else total / max(count, 1)
    return raw


def _noisy_count(raw: int, ckey: int, column: str, small: bool) -> int:
    return max(0, raw + _step(ckey, column, small))


def _noisy_sum(raw: Any, ckey: int, column: str, largest: Any, small: bool) -> Any:
    if raw is None:
        return None
    noisy = raw + _step(ckey, column, small) * SUM_NOISE_FRACTION * abs(largest or 0)
    return round(noisy) if isinstance(raw, int) else noisy


def _step(ckey: int, column: str, small: bool) -> int:
    """A step drawn from the p-table by a uniform number that only the cell key and column decide."""
    digest = hashlib.blake2b(f"{ckey}|{column}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    steps = _SMALL_STEPS if small else _COUNT_STEPS
    return next((step for step, cumulative in steps if u < cumulative), steps[-1][0])
