"""Anonymised aggregates (L4, "usable but not visible"): which atoms each cell answers as absent
(``decide``, from ``anonymised_sql.signatures``), and the cells ``anonymised_sql.cells`` then found,
made safe to release (``protect``). It answers every question — it never refuses on the data — and
what it releases withstands the attacks that broke query-based anonymisation before it (the red team
in ``tests/redteam/`` runs them on every build).

**Atoms, not rows, decide the noise.** A where is read as atoms (``conditions.py``): each
condition, each value of an in / not_in list, each range snapped to a grid. A released value gets
one noise layer per atom that stayed, one per group value of its cell, one for the table and one
for the whole question, each a standard normal draw from ``noise.py`` seeded by the release, the
aggregate and what the layer stands for — never by the rows. Layers are summed, so a value's noise
SD is ``layer_sd`` × √(number of layers); the answer gives it (``noise_sd``).

* The same question always gets the same answer, and so does the same condition written again (a
  one-value ``in`` is ``=``; repeated values and conditions count once; order does not matter):
  asking again draws nothing new. (``sex = F`` and ``sex != M`` are different atoms, two draws.)
* Splitting a population into parts does not average the noise away: every part carries the layers
  of the conditions they share, so the parts' total carries them once per part.
* Noise never depends on who contributes. Under cell-key perturbation two queries over the same
  rows always agreed and queries over different rows almost never did: comparing a population
  with and without one person's row told whether the person was in it (the equality oracle).

**Low-effect detection.** In every cell, ``decide`` reads how many persons hold each signature (the
distinct fail masks and list values of their rows) and takes atoms out one at a time, the one that
would change the cell by the fewest persons first — if that is under its threshold (at least the
floor, fuzzy above, fixed per atom) — measuring the rest again without it. The cell is then exactly
the answer to the question without those atoms, layers and all, and the answer names them
(``low_effect``). A condition that singles out one person or a handful — or two of them, each
removing the same person — changes nothing: "everyone in the group but the postcode of this person"
is answered exactly as "everyone in the group", trackers that pad a small group into a large one get
the large one alone, and an added atom that is the weakest and under its threshold goes first, so
the others are decided exactly as without it. (Atoms are measured with each other present, so near
their thresholds two of them can change each other's decisions; the README lists that risk.)

**A noisy low-count threshold.** A cell of fewer persons than its threshold (at least the floor,
fuzzy above, fixed per cell's atoms) releases nothing and nothing is refused: no answer says "fewer
than k" exactly. It is decided on the count the cell answers, never on the question as asked
(released-then-withheld would tell that a dropped condition removed someone). Cells are listed as
suppressed only where every group field has declared categories (then every combination is listed
whether or not anyone holds it); elsewhere a cell that is not in the answer was empty or too small,
and the answer does not say which.

**Sums and averages** flatten their outliers first: the one or two largest (and smallest)
per-person totals in a cell are brought to the mean of the next three or four, so one person's
extreme value moves nothing, and the noise is scaled by that mean snapped up to a preferred number —
the size of a typical large contribution, not the largest (whose size the noise would otherwise
give away). An average's noise is scaled the same way by how far one person can move it: the
farthest flattened per-person mean from the cell's mean, over the count the cell releases (never the
true count, which the SD would otherwise give away). Values are rounded: counts to whole persons,
sums and averages to the column's precision. Flattening takes the dominance rule's place (an exact
test of the data, an oracle), and a policy file may not add it back at L4.

Residual risk is documented in the README: each suite's result, and what no defence here stops.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from catalog.delivery import anonymised_sql
from catalog.delivery.anonymised_sql import Decision
from catalog.delivery.compiler import output_name
from catalog.delivery.conditions import Atom, Reading, canonical_value, plain_value
from catalog.delivery.disclosure import order_and_cut
from catalog.delivery.noise import Noise
from catalog.delivery.schemas import MAX_GROUPS, LowEffect, QueryRequest, Snapped, Suppressed
from catalog.policy import Anonymisation, GradeRule
from catalog.products import dictionary


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


def depth(rule: GradeRule) -> int:
    """How many per-person totals ``anonymised_sql.cells`` lists per cell: the most outliers and top group."""
    settings = _settings(rule)
    return settings.outliers[1] + settings.top_group[1]


def _floor(rule: GradeRule) -> int:
    return max(rule.k, _settings(rule).min_persons)


def decide(
    rows: list[dict[str, Any]], query: QueryRequest, reading: Reading, limits: dict[str, float]
) -> dict[tuple, Decision]:
    """Per cell, the atoms answered as absent, from ``anonymised_sql.signatures``' rows.

    Greedily, the atom that would change the cell by the fewest persons goes first — if that is under
    its threshold — and the others are measured again without it, until every atom left would change
    the cell by at least its threshold. An atom that singles out fewer persons than any other, and
    fewer than its threshold, is taken out before the others are measured: the answer is the same
    question's without it, exactly.
    """
    by_cell: dict[tuple, list[tuple[tuple[tuple[int, tuple[int, ...]], ...], int]]] = {}
    for row in rows:
        cell = tuple(row[g] for g in query.group_by)
        by_cell.setdefault(cell, []).append((anonymised_sql.pairs(row["_signature"], reading), row["_persons"]))
    return {cell: _greedy(persons, reading, limits) for cell, persons in by_cell.items()}


def _greedy(persons: list[tuple[tuple, int]], reading: Reading, limits: dict[str, float]) -> Decision:
    lists = len(reading.disjunctions)

    def counted(dropped: int, values: tuple[frozenset[int], ...]) -> int:
        def counts(signature: tuple) -> bool:
            return any(
                mask & ~dropped == 0 and all(held[n] not in values[n] for n in range(lists)) for mask, held in signature
            )

        return sum(n for signature, n in persons if counts(signature))

    dropped, values = 0, tuple(frozenset[int]() for _ in range(lists))
    now = counted(dropped, values)
    while True:
        candidates = []
        for j, atom in enumerate(reading.conjuncts):
            if not dropped >> j & 1:
                candidates.append((counted(dropped | 1 << j, values) - now, atom.key, (dropped | 1 << j, values)))
        for n, atoms in enumerate(reading.disjunctions):
            for atom in atoms:
                if atom.position not in values[n]:
                    fewer = (*values[:n], values[n] | {atom.position}, *values[n + 1 :])
                    candidates.append((now - counted(dropped, fewer), atom.key, (dropped, fewer)))
        if not candidates:
            break
        effect, key, state = min(candidates, key=lambda c: (c[0], c[1]))
        if effect >= limits[key]:
            break
        dropped, values = state
        now = counted(dropped, values)
    return Decision(dropped=dropped, values=values)


def protect(
    cells: list[dict[str, Any]],
    query: QueryRequest,
    reading: Reading,
    decisions: dict[tuple, Decision],
    rule: GradeRule,
    noise: Noise,
    seed: tuple[str, ...],
    table: dict[str, Any],
) -> Released:
    """The answer to ``query`` from ``anonymised_sql.cells`` and each cell's ``decisions``; ``seed``
    names the release and table the noise belongs to."""
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
        key = tuple(cell[g] for g in groups)
        group = dict(zip(groups, key, strict=True))
        decision = decisions.get(key, Decision())
        dropped = _dropped_atoms(reading, decision)
        kept = [a.key for a in reading.atoms if a not in dropped]
        keys = sorted({*kept, *(f"=|{g}|{canonical_value(cell[g])}" for g in groups)})
        question = "&".join(keys)
        persons = cell["_persons"] or 0
        if persons < noise.above(_floor(rule), settings.threshold_sd, *seed, "low-count", question):
            continue
        released_groups.add(key)
        for atom in dropped:
            dropped_in.setdefault(atom.path, (atom, []))[1].append(group)
        row: dict[str, Any] = dict(group)
        sds: dict[str, float | None] = {}
        notes: list[Suppressed] = []
        layers = len(keys) + 2  # + the table's and the question's own
        # The count as a count aggregate would release it: what an average's noise is sized by, so its
        # SD tells nothing the released count does not.
        released_persons = max(1, round(persons + settings.layer_sd * _draw(noise, seed, "count", keys, question)))
        for aggregate, name in zip(query.aggregates, names, strict=True):
            draw = _draw(noise, seed, name, keys, question)
            if aggregate.field is None:
                row[name], sds[name] = released_persons, _sd(settings, layers)
                continue
            field = fields[aggregate.field]
            t = summed.index(aggregate.field)
            precision = dictionary.precision(field)
            value, sd = _flattened(
                cell, t, aggregate.fn, released_persons, noise, seed, question, settings, layers, precision
            )
            if value is None:
                row[name], sds[name] = None, None
            else:
                row[name], sds[name] = dictionary.rounded(value + sd * draw, precision), _round_sd(sd)
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
                value=plain_value(atom.value) if atom.disjunction is not None or atom.path.count(".") > 1 else None,
                cells=None if len(where) == everywhere else where,
            )
            for atom, where in dropped_in.values()
        ],
        snapped=[Snapped(condition=path, low=low, high=high) for path, (low, high) in reading.snapped],
    )


def _dropped_atoms(reading: Reading, decision: Decision) -> list[Atom]:
    dropped = [a for j, a in enumerate(reading.conjuncts) if decision.dropped >> j & 1]
    for n, atoms in enumerate(reading.disjunctions):
        gone = decision.values[n] if decision.values else frozenset()
        dropped += [a for a in atoms if a.position in gone]
    return dropped


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
    low_o, high_o = settings.outliers
    low_g, high_g = settings.top_group
    outliers = low_o + noise.choice(high_o - low_o + 1, *seed, "outliers", question)
    group = low_g + noise.choice(high_g - low_g + 1, *seed, "top-group", question)
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


def _settings(rule: GradeRule) -> Anonymisation:
    assert rule.anonymisation is not None, "only a grade with anonymisation is anonymised"
    return rule.anonymisation
