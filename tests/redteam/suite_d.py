"""Suite D — linear reconstruction (Dinur–Nissim, Cohen–Nissim) of a secret bit over 100 persons.

The 100 persons of district D8 each do or do not have ``drug`` (exactly half do, independently of
anything the attacker knows). The attacker asks for the number of D8 persons with the drug among
random halves of them — written as ``postcode in (…)`` where postcodes may be filtered, else as
``age in (…)`` and ``occupation in (…)`` — then solves the least-squares system of answers against
the persons each query selects, and guesses the drug for everyone whose solution is above ½. Where
an answer says a condition (or one of its values) was treated as having low effect, the attacker
uses the query Lode actually answered.

Budget: 10 n = 1,000 queries. Bound: chance (½) + 5 points.
"""

from __future__ import annotations

import random
from typing import Any

from tests.redteam.analyst import INVALID, REFUSED, Analyst, between, eq, isin
from tests.redteam.population import SMALL_DISTRICT, Person, Population
from tests.redteam.stats import Outcome

BOUND = 0.55


def solve(rows: list[list[int]], answers: list[float], n: int, ridge: float = 1e-6) -> list[float]:
    """Least squares by the normal equations (AᵀA + ridge·I) x = Aᵀb, Gaussian elimination."""
    ata = [[0.0] * n for _ in range(n)]
    atb = [0.0] * n
    for row, b in zip(rows, answers, strict=True):
        ones = [i for i, v in enumerate(row) if v]
        for i in ones:
            atb[i] += b
            line = ata[i]
            for j in ones:
                line[j] += 1.0
    for i in range(n):
        ata[i][i] += ridge
    m = [[*line, atb[i]] for i, line in enumerate(ata)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        if abs(m[col][col]) < 1e-12:
            continue
        inv = 1.0 / m[col][col]
        for r in range(n):
            if r != col and m[r][col]:
                f = m[r][col] * inv
                mr, mc = m[r], m[col]
                for c in range(col, n + 1):
                    mr[c] -= f * mc[c]
    return [m[i][n] / m[i][i] if abs(m[i][i]) > 1e-12 else 0.5 for i in range(n)]


AGE_WIDTHS = (10, 20, 50, 100)


def _subset(rng: random.Random, group: list[Person], postcode: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Conditions that pick a random part of the district, and the fields to split the answer by.

    Without postcodes, the parts are what an anonymised grade can release: an age bucket (wide ones
    more often: a cell needs a few dozen persons), some occupations, a sex, or a split by sex or
    occupation — the solver uses each released cell as one more equation."""
    if postcode:
        return [isin("postcode", [p.postcode for p in group if rng.random() < 0.5])], []
    width = rng.choice(AGE_WIDTHS)
    low = rng.randrange(0, 100, width)
    chosen = [between("age", low, low + width - 1)] if width < 100 else []
    occupations = sorted({p.occupation for p in group})
    if rng.random() < 0.5:
        picked = rng.sample(occupations, rng.randint(2, len(occupations) - 1))
        chosen.append(isin("occupation", picked))
    split = rng.choice([[], [], ["sex"], ["occupation"]])
    if not split and rng.random() < 0.5:
        chosen.append(eq("sex", rng.choice("FM")))
    return chosen, split


KNOWN = frozenset({"age", "sex", "district", "occupation", "postcode"})  # what the attacker knows of everyone


def _selected(where: list[dict[str, Any]], answer: dict[str, Any], group: dict[str, Any], person: Person) -> bool:
    """Does ``person`` count in the answer's cell ``group``, as Lode read the query for that cell? Only the
    conditions on what the attacker knows decide it; ``drug = pos`` is what the count measures."""
    dropped = _dropped(answer, group)
    ranges = {note["condition"]: (note["low"], note["high"]) for note in answer.get("snapped") or []}
    for field, value in group.items():
        if getattr(person, field) != value:
            return False
    for i, condition in enumerate(where):
        path, field, op = f"where.{i}", condition["field"], condition["op"]
        if path in dropped or field not in KNOWN:
            continue
        mine = getattr(person, field)
        if op == "=" and mine != condition["value"]:
            return False
        if op == "in":
            values = [v for j, v in enumerate(condition["value"]) if f"{path}.value.{j}" not in dropped]
            if mine not in values:
                return False
        if op == "between":
            low, high = ranges.get(path, (condition["value"][0], condition["value"][1] + 1))
            if not low <= mine < high:
                return False
    return True


def _dropped(answer: dict[str, Any], group: dict[str, Any]) -> set[str]:
    return {
        note["condition"]
        for note in answer.get("low_effect") or []
        if note.get("cells") is None or group in note["cells"]
    }


async def attack(analyst: Analyst, people: Population) -> tuple[Outcome, dict[str, Outcome]]:
    rng = random.Random(11)
    group = people.small_district
    n = len(group)
    budget = 10 * n
    analyst.allow(budget)
    start = analyst.queries
    postcode = await analyst.count([eq("district", SMALL_DISTRICT), isin("postcode", ["PC00000"])]) != INVALID
    rows: list[list[int]] = []
    answers: list[float] = []
    while analyst.queries - start < budget:
        chosen, split = _subset(rng, group, postcode)
        where = [eq("district", SMALL_DISTRICT), eq("drug", "pos"), *chosen]
        body: dict[str, Any] = {"table": "people", "aggregates": [{"fn": "count"}], "where": where}
        if split:
            body["group_by"] = split
        answer = await analyst.answer(body)
        if answer in (REFUSED, INVALID):
            continue
        for row in answer["rows"]:
            cell = {g: row[g] for g in split}
            if row["count"] is None or "where.1" in _dropped(answer, cell):
                continue  # withheld, or it counts everyone selected (the drug condition was dropped)
            rows.append([int(_selected(where, answer, cell, p)) for p in group])
            answers.append(row["count"])
    x = solve(rows, answers, n) if rows else [0.5] * n
    correct = sum((x[i] > 0.5) == (p.drug == "pos") for i, p in enumerate(group))
    queries = analyst.queries - start
    how = "postcode subsets" if postcode else "age-bucket, occupation and sex subsets"
    outcome = Outcome("D reconstruction", correct, n, BOUND, queries, f"10n = {budget}; {how}; {len(rows)} cells")
    return outcome, {}
