"""Suite C — trackers and refusal oracles: the exact size of planted groups of 1–8 persons.

Forty codes ``S01``…``S40`` are each held by 1 to 8 persons (five of each size). Two ways in:

* ``tracker`` — (X ∪ T) − T: the persons with ``dx in (S, C)`` minus those with ``dx = C``, over
  twelve pads ``C``, averaged (and intersected where the noise is bounded);
* ``refusal`` — a refusal that depends on the data is an exact answer: ``dx != S`` together with
  ``age not in (…)`` over ages whose head-count the attacker knows leaves out |S| + m persons, and
  a "fewer than k left out" refusal says whether |S| + m < k. The smallest m that is not refused
  gives |S| = k − m exactly.

Budget: 500 queries per group. Bound: the prior mode (an eighth of the groups).
"""

from __future__ import annotations

from collections import Counter

from tests.redteam.analyst import INVALID, REFUSED, Analyst, eq, isin, ne
from tests.redteam.population import COMMON_DX, Population
from tests.redteam.stats import Outcome, sizes_recovered

BUDGET = 500
SIZES = tuple(range(1, 9))
K = 10
NOISE_BOUND = 2


def _age_pads(people: Population) -> dict[int, list[int]]:
    """For m = 1…9, ages holding exactly m persons between them (a subset sum over the rarest ages)."""
    counts = Counter(p.age for p in people.persons)
    reachable: dict[int, list[int]] = {0: []}
    for age in sorted(counts, key=lambda a: (counts[a], a)):
        if counts[age] >= K:
            continue
        for total, ages in list(reachable.items()):
            m = total + counts[age]
            if m < K and m not in reachable:
                reachable[m] = [*ages, age]
    return {m: ages for m, ages in reachable.items() if m}


async def _tracker(analyst: Analyst, code: str) -> int:
    found = []
    for pad in COMMON_DX:
        alone = await analyst.count([eq("dx", pad)])
        mixed = await analyst.count([isin("dx", [code, pad])])
        if isinstance(alone, int | float) and isinstance(mixed, int | float):
            found.append(mixed - alone)
    if not found:
        return SIZES[0]
    mean = sum(found) / len(found)
    allowed = [s for s in SIZES if all(abs(s - e) <= 2 * NOISE_BOUND for e in found)] or list(SIZES)
    return min(allowed, key=lambda s: abs(s - mean))


async def _refusal(analyst: Analyst, code: str, pads: dict[int, list[int]]) -> int:
    """Binary search for the smallest pad m that is not refused: then |S| + m ≥ k > |S| + m − 1."""
    low, high = 1, K - 1  # invariant: refused at low − 1 … answered at high + 1 (k − |S| ∈ [1, 9])
    answered_at = None
    while low <= high:
        m = (low + high) // 2
        if m not in pads:
            break
        answer = await analyst.count([ne("dx", code), {"field": "age", "op": "not_in", "value": pads[m]}])
        if answer == INVALID:
            return SIZES[0]
        if answer == REFUSED:
            low = m + 1
        else:
            answered_at, high = m, m - 1
    if answered_at is None:
        return SIZES[0]
    return min(SIZES, key=lambda s: abs(s - (K - answered_at)))


async def attack(analyst: Analyst, people: Population) -> tuple[Outcome, dict[str, Outcome]]:
    pads = _age_pads(people)
    right = {"tracker": 0, "refusal": 0}
    start = analyst.queries
    for code, size in people.c_sizes.items():
        analyst.allow(BUDGET)
        right["tracker"] += await _tracker(analyst, code) == size
        right["refusal"] += await _refusal(analyst, code, pads) == size
    queries = analyst.queries - start
    return sizes_recovered("C", "C trackers and refusals", right, len(people.c_sizes), SIZES, queries, BUDGET)
