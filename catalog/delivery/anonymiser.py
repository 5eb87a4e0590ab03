"""Anonymised aggregates (L4, "usable but not visible"): what ``anonymised_sql.cells`` found in
each cell, made safe to release. It answers every question — it never refuses on the data — and
what it releases withstands the attacks that broke query-based anonymisation before it (the red
team in ``tests/redteam/`` runs them on every build).

**Atoms, not rows, decide the noise.** A where is read as atoms (``conditions.py``): each
condition, each value of an in / not_in list, each range snapped to a grid. A released value gets
one noise layer per atom that stayed, one per group value of its cell, one for the table and one
for the whole question, each a standard normal draw from ``noise.py`` seeded by the release, the
aggregate and what the layer stands for — never by the rows. Layers are summed, so a value's noise
SD is ``layer_sd`` × √(number of layers); the answer gives it (``noise_sd``).

* The same question always gets the same answer, and so does the same condition spelt another way:
  asking again or rephrasing draws nothing new.
* Splitting a population into parts does not average the noise away: every part carries the layers
  of the conditions they share, so the parts' total carries them once per part.
* Noise never depends on who contributes. Under cell-key perturbation two queries over the same
  rows always agreed and queries over different rows almost never did: comparing a population
  with and without one person's row told whether the person was in it (the equality oracle).

**Low-effect detection.** In every cell, each atom's effect is counted in the same scan: the
persons who would join the cell if a condition were dropped (they fail it and nothing else), or
leave it if a value were dropped from an in-list (it is the only value their rows hold). An atom
whose effect is under its threshold — at least k, fuzzy above it and fixed per atom — is answered
as if it were absent, layers and all, and the answer names it (``low_effect``). A condition that
singles out one person, or a handful, therefore changes nothing: "everyone in the group but the
postcode of this person" is answered exactly as "everyone in the group", and trackers that pad a
small group into a large one get the large one alone.

**A noisy low-count threshold.** A cell of fewer persons than its threshold (at least k, fuzzy
above, fixed per cell's atoms) releases nothing and nothing is refused: no answer says "fewer
than k" exactly. Cells are listed as suppressed only where every group field has declared
categories (then every combination is listed whether or not anyone holds it); elsewhere a cell that
is not in the answer was empty or too small, and the answer does not say which.

**Sums and averages** flatten their outliers first: the one or two largest (and smallest)
per-person totals in a cell are brought to the mean of the next three or four, so one person's
extreme value moves nothing, and the noise is scaled by that mean snapped up to a preferred number —
the size of a typical large contribution, not the largest (whose size the noise would otherwise
give away). An average's noise is scaled the same way by how far one person can move it: the
farthest flattened per-person mean from the cell's mean, over the persons in the cell. Values are
rounded: counts to whole persons, sums and averages to the column's precision.
The dominance rule still withholds a sum or average that two persons hold nearly all of.

Residual risk is documented in the README: each suite's result, and what no defence here stops.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import msgspec

from catalog.delivery.compiler import output_name
from catalog.delivery.conditions import Atom, Reading, canonical_value
from catalog.delivery.disclosure import order_and_cut
from catalog.delivery.noise import Noise
from catalog.delivery.schemas import MAX_GROUPS, LowEffect, QueryRequest, Snapped, Suppressed
from catalog.policy import Anonymisation, GradeRule
from catalog.products import dictionary

DEPTH = 6  # per-person totals aggregate_sql lists per cell: up to two outliers and four of the top group


class Released(msgspec.Struct):
    rows: list[dict[str, Any]]
    suppressed: list[Suppressed]
    noise_sd: list[dict[str, float | None]]
    low_effect: list[LowEffect]
    snapped: list[Snapped]


def thresholds(reading: Reading, rule: GradeRule, noise: Noise, seed: tuple[str, ...]) -> dict[str, float]:
    """Each atom's low-effect threshold: at least the floor, fuzzy above it, and the same for the atom in
    every question. (Drawn afresh per question, two questions that differ only by a dropped atom would
    draw different thresholds for the atoms they share, and disagree more often when a dropped person
    was there — the red team's equality oracle measured that at 57 %.)"""
    settings = _settings(rule)
    floor = _floor(rule)
    return {a.key: noise.above(floor, settings.threshold_sd, *seed, "low-effect", a.key) for a in reading.atoms}


def _floor(rule: GradeRule) -> int:
    return max(rule.k, _settings(rule).min_persons)


def protect(
    cells: list[dict[str, Any]],
    query: QueryRequest,
    reading: Reading,
    rule: GradeRule,
    noise: Noise,
    seed: tuple[str, ...],
    table: dict[str, Any],
) -> Released:
    """The answer to ``query`` from its cells; ``seed`` names the release and table the noise belongs to."""
    settings = _settings(rule)
    fields = {f["name"]: f for f in table["fields"]}
    groups = list(query.group_by)
    names = [output_name(a) for a in query.aggregates]
    summed = list(dict.fromkeys(a.field for a in query.aggregates if a.field is not None))
    answers: list[tuple[dict[str, Any], tuple[dict[str, float | None], list[Suppressed]]]] = []
    # Notes name released cells only: which other cells exist is not the answer's to tell.
    dropped_in: dict[str, tuple[Atom, list[dict[str, Any]]]] = {}
    released_groups: set[tuple] = set()
    for cell in cells[:MAX_GROUPS]:
        group = {g: cell[g] for g in groups}
        kept: list[str] = []
        dropped: list[Atom] = []
        flags = [cell[f"_x{j}"] for j in range(len(reading.conjuncts))]
        flags += [gone for n in range(len(reading.disjunctions)) for gone in cell[f"_xl{n}"]]
        for atom, gone in zip(reading.atoms, flags, strict=True):
            if gone:
                dropped.append(atom)
            else:
                kept.append(atom.key)
        keys = sorted({*kept, *(f"=|{g}|{canonical_value(cell[g])}" for g in groups)})
        question = "&".join(keys)
        persons = cell["_persons"] or 0
        # As asked, and as answered: dropping an atom never releases a cell the question itself kept back.
        smallest = min(persons, cell["_asked"] or 0)
        if smallest < noise.above(_floor(rule), settings.threshold_sd, *seed, "low-count", question):
            continue
        released_groups.add(tuple(cell[g] for g in groups))
        for atom in dropped:
            dropped_in.setdefault(atom.path, (atom, []))[1].append(group)
        row: dict[str, Any] = dict(group)
        sds: dict[str, float | None] = {}
        notes: list[Suppressed] = []
        layers = len(keys) + 2  # + the table's and the question's own
        for aggregate, name in zip(query.aggregates, names, strict=True):
            draw = _draw(noise, seed, name, keys, question)
            if aggregate.field is None:
                row[name], sds[name] = max(0, round(persons + settings.layer_sd * draw)), _sd(settings, layers)
                continue
            field = fields[aggregate.field]
            t = summed.index(aggregate.field)
            precision = dictionary.precision(field)
            value, sd = _flattened(cell, t, aggregate.fn, persons, noise, seed, question, settings, layers, precision)
            if value is not None and rule.dominance is not None and _dominated(cell, t, rule.dominance):
                value = None
                notes.append(Suppressed(group=group, columns=[name], reason="dominance"))
            if value is None:
                row[name], sds[name] = None, None
            else:
                row[name], sds[name] = _round(value + sd * draw, precision), _round_sd(sd)
        answers.append((row, (sds, notes)))
    answers = order_and_cut(answers, query)
    suppressed = [note for _, (_, notes) in answers for note in notes]
    suppressed += [
        Suppressed(group=dict(zip(groups, combination, strict=True)), columns=names, reason="small_cell")
        for combination in _declared_cells(groups, fields)
        if combination not in released_groups
    ]
    everywhere = len(released_groups)
    return Released(
        rows=[row for row, _ in answers],
        suppressed=suppressed,
        noise_sd=[sds for _, (sds, _) in answers],
        low_effect=[
            LowEffect(
                condition=atom.path,
                field=atom.field,
                value=_shown(atom.value) if atom.path.count(".") > 1 else None,
                cells=None if len(where) == everywhere else where,
            )
            for atom, where in dropped_in.values()
        ],
        snapped=[Snapped(condition=path, low=low, high=high) for path, (low, high) in reading.snapped],
    )


# --- values ---------------------------------------------------------------------------------------


def _draw(noise: Noise, seed: tuple[str, ...], name: str, keys: list[str], question: str) -> float:
    """The sum of one value's layers, each N(0, 1): its atoms and group values, the table, the question."""
    total = sum(noise.normal(*seed, name, "atom", key) for key in keys)
    return total + noise.normal(*seed, name, "table") + noise.normal(*seed, name, "question", question)


def _sd(settings: Anonymisation, layers: int) -> float:
    return _round_sd(settings.layer_sd * math.sqrt(layers))


def _flattened(
    cell: dict[str, Any],
    t: int,
    fn: str,
    persons: int,
    noise: Noise,
    seed: tuple[str, ...],
    question: str,
    settings: Anonymisation,
    layers: int,
    precision: int,
) -> tuple[float | None, float]:
    """A sum or an average with its outliers flattened, and the SD its noise gets (None: too few values)."""
    outliers = 1 + noise.choice(2, *seed, "outliers", question)
    group = 3 + noise.choice(2, *seed, "top-group", question)
    unit = 10.0**-precision
    spread = settings.layer_sd * math.sqrt(layers)
    if fn == "sum":
        top, bottom, total = cell[f"_top{t}"] or [], cell[f"_bot{t}"] or [], cell[f"_sum{t}"]
        if len(top) < outliers + group or total is None:
            return None, 0.0
        high = sum(top[outliers : outliers + group]) / group
        low = sum(bottom[outliers : outliers + group]) / group
        total -= sum(max(0.0, v - high) for v in top[:outliers]) + sum(min(0.0, v - low) for v in bottom[:outliers])
        return total, spread * _snap_up(max(abs(high), abs(low)), unit)
    means_top, means_bottom = cell[f"_mtop{t}"] or [], cell[f"_mbot{t}"] or []
    total, rows = cell[f"_sum{t}"], cell[f"_cnt{t}"]
    if len(means_top) < outliers + group or not rows:
        return None, 0.0
    high = sum(p["m"] for p in means_top[outliers : outliers + group]) / group
    low = sum(p["m"] for p in means_bottom[outliers : outliers + group]) / group
    total -= sum(max(0.0, p["m"] - high) * p["n"] for p in means_top[:outliers])
    total -= sum(min(0.0, p["m"] - low) * p["n"] for p in means_bottom[:outliers])
    mean = total / rows
    # One person moves a mean by their distance from it over the persons: the farthest (flattened) decides.
    reach = max(high - mean, mean - low, 0.0)
    return mean, spread * _snap_up(reach, unit) / max(persons, 1)


def _dominated(cell: dict[str, Any], t: int, dominance: Any) -> bool:
    total = cell[f"_abs{t}"] or 0
    top = sum(abs(v) for v in (cell[f"_top{t}"] or [])[: dominance.n])
    return total > 0 and top >= dominance.share * total


def _snap_up(value: float, unit: float) -> float:
    """The smallest R10 preferred number (1, 1.25, 1.6, 2, 2.5, 3.15, 4, 5, 6.3, 8 × 10ⁿ) at least
    ``value``, and at least one unit of the column's precision: the answer gives the noise SD, and a
    scale read off it says only the size of a typical large contribution within an eighth or so."""
    value = max(abs(value), unit)
    exponent = math.floor(math.log10(value))
    for mantissa in _R10:
        candidate = mantissa * 10.0**exponent
        if candidate >= value * (1 - 1e-12):
            return candidate
    return 10.0 ** (exponent + 1)


_R10 = (1.0, 1.25, 1.6, 2.0, 2.5, 3.15, 4.0, 5.0, 6.3, 8.0, 10.0)


def _round(value: float, precision: int) -> float | int:
    rounded = round(value, precision)
    return int(rounded) if precision == 0 else rounded


def _round_sd(sd: float) -> float:
    """Three significant digits: the SD is for reading, not for arithmetic on the noise."""
    return float(f"{sd:.3g}")


def _declared_cells(groups: list[str], fields: dict[str, dict[str, Any]]) -> list[tuple]:
    """Every combination of the group fields' declared categories, or none when a group field has no
    categories — then which cells exist is itself the data's to keep. (A cell of nulls is shown only
    when it is released, so whether one exists is not told either.)"""
    if not groups or any(not fields[g].get("categories") for g in groups):
        return [()] if not groups else []
    combinations: list[tuple] = [()]
    for g in groups:
        combinations = [(*c, v) for c in combinations for v in fields[g]["categories"]]
        if len(combinations) > MAX_GROUPS:
            return []
    return combinations


def _shown(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _settings(rule: GradeRule) -> Anonymisation:
    assert rule.anonymisation is not None, "only a grade with anonymisation is anonymised"
    return rule.anonymisation
