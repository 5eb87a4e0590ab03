"""Suite A — the equality oracle: does a victim, unique on quasi-identifiers, have the flag?

For each of 200 victims (exactly half have it) the attacker asks pairs of queries: the flagged
persons of a population that contains the victim, and the same with one more condition that
removes exactly the victim (a unique postcode where postcodes may be filtered, else a
quasi-identifier value no one else in that population has). Under cell-key perturbation the two
answers agree exactly when the victim is not counted in the first — i.e. lacks the flag. Four ways
to read the answers are scored, and the suite's result is the best of them:

* ``equality`` — the victim has the flag iff some pair disagrees (the oracle of the issue);
* ``difference`` — the mean difference over the pairs exceeds ½ (averaging the noise away);
* ``cell`` — the flagged count of the victim's exact quasi-identifiers, where it is released;
* ``released`` — a withheld count says "fewer than the threshold": the share of the victim's
  populations whose flagged count was released, above the median share over all victims, says the
  victim adds one to each of them;
* ``range_edge`` — two snapped age ranges, one inside the other, whose difference holds only the
  victim within a population; the mean difference over several populations exceeds ½;
* ``two_excluded`` — a population, and the same with two conditions each of which removes the
  victim (and perhaps a few others): if dropped conditions let persons failing both vanish while the
  noise stays that of the population, the difference is exactly the victim;
* ``threshold_flip`` — a small released population (a few dozen flagged persons), and the same with
  one more condition that removes only the victim: if the release were decided on the question as
  asked, "released, then withheld" would say the victim was in it.

Budget: 1,000 queries per victim (the attack stops well before, having nothing left to learn).
"""

from __future__ import annotations

import itertools
from typing import Any

from tests.redteam.analyst import INVALID, REFUSED, Analyst, between, eq, ne
from tests.redteam.population import Person, Population
from tests.redteam.stats import Outcome

BUDGET = 1000
BOUND = 0.55  # chance (½) + 5 points
PAIRS = 5
QI_FIELDS = ("sex", "district", "occupation")
# (sub-bucket width, bucket width): both on the 1/2/5 × 10ⁿ grid, the bucket made of two sub-buckets
NESTED = ((1, 2), (5, 10), (10, 20), (50, 100))


def _value(p: Person, field: str) -> Any:
    return getattr(p, field)


def _populations(victim: Person) -> list[dict[str, Any]]:
    """Quasi-identifier populations containing the victim, broad first (an age bucket may narrow them)."""
    out: list[dict[str, Any]] = []
    for n in range(0, len(QI_FIELDS) + 1):
        for fields in itertools.combinations(QI_FIELDS, n):
            base = {f: _value(victim, f) for f in fields}
            out.append(base)
            for width in (50, 20, 10):
                low = victim.age // width * width
                out.append({**base, "age": (low, low + width)})
    return out


class _Members:
    """The persons of each population, each worked out once per attack: the 200 victims' populations
    overlap (every victim shares {}, its sex, its district …), and a scan of everyone per population
    was most of the attacker's own time."""

    def __init__(self, people: list[Person]) -> None:
        self.people = people
        self._found: dict[tuple[tuple[str, Any], ...], list[Person]] = {}

    def __call__(self, population: dict[str, Any]) -> list[Person]:
        key = tuple(sorted(population.items()))
        if key not in self._found:
            self._found[key] = [p for p in self.people if self._inside(p, population)]
        return self._found[key]

    @staticmethod
    def _inside(p: Person, population: dict[str, Any]) -> bool:
        for field, value in population.items():
            if field == "age":
                if not value[0] <= p.age < value[1]:
                    return False
            elif _value(p, field) != value:
                return False
        return True


def _conditions(population: dict[str, Any]) -> list[dict[str, Any]]:
    # An age bucket [lo, hi) is written as between [lo, hi − 1]: the same whole years at every grade.
    return [between("age", v[0], v[1] - 1) if f == "age" else eq(f, v) for f, v in population.items()]


def _exclusions(victim: Person, members: list[Person], postcode: bool) -> list[dict[str, Any]]:
    """Conditions that, within ``members``, remove the victim and no one else."""
    others = [p for p in members if p is not victim]
    found = [ne("postcode", victim.postcode)] if postcode else []
    for field in ("age", *QI_FIELDS):
        value = _value(victim, field)
        if all(_value(p, field) != value for p in others):
            found.append(ne(field, value))
    return found


async def _pairs(
    analyst: Analyst, victim: Person, members_of: _Members, postcode: bool
) -> tuple[list[tuple[Any, Any]], list[bool]]:
    """The pairs of answers, and for every population tried whether its flagged count was released."""
    pairs: list[tuple[Any, Any]] = []
    released: list[bool] = []
    for population in _populations(victim):
        members = members_of(population)
        if len(members) < 40:  # too few for ≈ 10 flagged persons: the answer would be withheld
            continue
        for exclusion in _exclusions(victim, members, postcode):
            where = [eq("flag", "pos"), *_conditions(population)]
            first = await analyst.count(where)
            if first in (INVALID, REFUSED):
                break
            if len(released) < len(pairs) + 1 + PAIRS:
                released.append(first is not None)
            second = await analyst.count([*where, exclusion])
            if second == INVALID:
                continue
            if first is None or second in (None, REFUSED):
                break
            pairs.append((first, second))
            break
        if len(pairs) >= PAIRS:
            break
    return pairs, released


async def _range_edges(analyst: Analyst, victim: Person, members_of: _Members) -> list[float]:
    differences: list[float] = []
    for n in range(0, len(QI_FIELDS) + 1):
        for fields in itertools.combinations(QI_FIELDS, n):
            base = {f: _value(victim, f) for f in fields}
            members = members_of(base)
            for sub, width in NESTED:
                low = victim.age // width * width
                half = (low, low + sub) if victim.age >= low + sub else (low + sub, low + width)
                edge = [p for p in members if low <= p.age < low + width and not half[0] <= p.age < half[1]]
                inner = [p for p in members if half[0] <= p.age < half[1]]
                if edge != [victim] or len(inner) < 40:
                    continue
                where = [eq("flag", "pos"), *_conditions(base)]
                whole = await analyst.count([*where, between("age", low, low + width - 1)])
                part = await analyst.count([*where, between("age", half[0], half[1] - 1)])
                if isinstance(whole, int | float) and isinstance(part, int | float):
                    differences.append(whole - part)
                break
    return differences


TWO_EXCLUDED = (
    (("district", "sex"), ("age", "occupation")),
    (("district", "occupation"), ("age", "sex")),
    (("sex", "occupation"), ("age", "district")),
    (("district",), ("age", "occupation")),
)
FLIP_TRIES = 6  # populations near the threshold tried per victim
EXTRAS: tuple[list[dict[str, Any]], ...] = (
    [],
    [eq("drug", "pos")],
    [eq("drug", "neg")],
    *([eq("dx", f"C{i:02d}")] for i in range(1, 13)),
)


async def _two_excluded(analyst: Analyst, victim: Person) -> bool | None:
    for base, pair in TWO_EXCLUDED:
        where = [eq("flag", "pos"), *(eq(f, _value(victim, f)) for f in base)]
        whole = await analyst.count(where)
        cut = await analyst.count([*where, *(ne(f, _value(victim, f)) for f in pair)])
        if isinstance(whole, int | float) and isinstance(cut, int | float):
            return whole - cut >= 1
    return None


async def _threshold_flip(analyst: Analyst, victim: Person, people: Population) -> bool | None:
    """True once a small released population withholds its answer when only the victim is removed."""
    tries = 0
    for n in range(1, len(QI_FIELDS) + 1):
        for fields in itertools.combinations(QI_FIELDS, n):
            alike = [
                p
                for p in people.persons
                if p.age == victim.age and all(_value(p, f) == _value(victim, f) for f in fields)
            ]
            if alike != [victim]:
                continue  # "age != the victim's" must remove the victim alone from this population
            for width in (50, 20, 10):
                low = victim.age // width * width
                for extra in EXTRAS:
                    if tries >= FLIP_TRIES:
                        return None
                    where = [
                        eq("flag", "pos"),
                        *(eq(f, _value(victim, f)) for f in fields),
                        between("age", low, low + width - 1),
                        *extra,
                    ]
                    whole = await analyst.count(where)
                    tries += 1
                    if not isinstance(whole, int | float) or whole > 40:
                        continue
                    cut = await analyst.count([*where, ne("age", victim.age)])
                    if cut is None:
                        return True
    return None


async def attack(
    analyst: Analyst, people: Population, victims: int | None = None
) -> tuple[Outcome, dict[str, Outcome]]:
    """Every victim (or the first ``victims``: still half of them flagged), every reading; the suite's
    outcome is the best reading's."""
    chosen = people.victims[:victims]
    postcode = await analyst.count([eq("flag", "pos"), ne("postcode", "PC00000")]) != INVALID
    names = ("equality", "difference", "cell", "range_edge", "two_excluded", "threshold_flip")
    votes: dict[str, list[bool]] = {name: [] for name in names}
    evidence: dict[str, list[bool]] = {name: [] for name in votes}  # right, where the reading had evidence
    shares: list[tuple[float, bool]] = []
    start = analyst.queries
    members_of = _Members(people.persons)
    for victim in chosen:
        analyst.allow(BUDGET)
        truth = victim.flag == "pos"
        guess = False  # with nothing learnt, one constant guess: right for exactly half of the victims

        pairs, released = await _pairs(analyst, victim, members_of, postcode)
        shares.append((sum(released) / len(released) if released else 0.0, truth))
        mean = sum(a - b for a, b in pairs) / len(pairs) if pairs else None
        cell = await analyst.count(
            [eq("flag", "pos"), eq("age", victim.age), *(eq(f, _value(victim, f)) for f in QI_FIELDS)]
        )
        edges = await _range_edges(analyst, victim, members_of)
        flipped = await _threshold_flip(analyst, victim, people)
        readings = {
            "two_excluded": await _two_excluded(analyst, victim),
            "threshold_flip": flipped,
            "equality": any(a != b for a, b in pairs) if pairs else None,
            "difference": mean > 0.5 if mean is not None else None,
            "cell": cell >= 0.5 if isinstance(cell, int | float) else None,
            "range_edge": sum(edges) / len(edges) > 0.5 if edges else None,
        }
        for name, said in readings.items():
            votes[name].append((guess if said is None else said) == truth)
            if said is not None:
                evidence[name].append(said == truth)
    median = sorted(share for share, _ in shares)[len(shares) // 2]
    votes["released"] = [(share > median) == truth for share, truth in shares]
    queries = analyst.queries - start
    budget = f"≤ {BUDGET} per victim; {queries / len(chosen):.0f} used on average"

    def informed(name: str) -> tuple[int, int] | None:
        return (sum(evidence[name]), len(evidence[name])) if name in evidence else None

    readings = {
        name: Outcome(f"A/{name}", sum(v), len(v), BOUND, queries, budget, informed(name)) for name, v in votes.items()
    }
    best = max(readings.values(), key=lambda o: o.correct)
    return Outcome(
        f"A equality oracle (best: {best.suite})", best.correct, best.trials, BOUND, queries, budget
    ), readings
