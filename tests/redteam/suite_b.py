"""Suite B — split averaging: the exact size of planted groups of 1–4 persons.

Sixty diagnosis codes ``R01``…``R60`` are each held by 1, 2, 3 or 4 persons (fifteen of each). A
group that small is never released as a cell, so the attacker hides it in a big one: the persons
with ``dx in (R, C)`` for a common code ``C``, against those with ``dx = C`` alone — both large,
and the same in every cell but the ones the group's members fall in. Splitting both by a partition
(sex, occupation, district, …) gives one more noisy estimate of the group's size per pad and
partition; the attacker averages them (``mean``) and, where the noise is bounded, intersects what
each estimate allows (``interval``).

Budget: 2,000 queries per group (about 16 are used: the attack has converged, or learns nothing more).
Bound: the prior mode — any constant guess is right for a quarter of the groups.
"""

from __future__ import annotations

from typing import Any

from tests.redteam.analyst import INVALID, REFUSED, Analyst, eq, isin
from tests.redteam.population import COMMON_DX, Population
from tests.redteam.stats import Outcome, sizes_recovered

BUDGET = 2000
SIZES = (1, 2, 3, 4)
PADS = COMMON_DX[:3]
PARTITIONS: list[list[str]] = [[], ["sex"], ["occupation"], ["sex", "occupation"], ["district"]]
NOISE_BOUND = 2  # the largest step of the cell-key p-table an attacker may know


def _mode(sizes: tuple[int, ...]) -> int:
    return sizes[0]


def _total(answer: Any) -> dict[tuple, Any] | None:
    if answer in (None, REFUSED, INVALID):
        return None
    return answer if isinstance(answer, dict) else {(): answer}


async def estimates(analyst: Analyst, code: str, budget: int) -> list[tuple[float, int]]:
    """(estimate, number of cells it sums) for every pad and partition whose cells were all released."""
    found: list[tuple[float, int]] = []
    analyst.allow(budget)
    for pad in PADS:
        for partition in PARTITIONS:
            alone = _total(await analyst.count([eq("dx", pad)], partition))
            mixed = _total(await analyst.count([isin("dx", [code, pad])], partition))
            if alone is None or mixed is None or set(alone) != set(mixed):
                continue
            if any(v is None for v in (*alone.values(), *mixed.values())):
                continue
            found.append((sum(mixed.values()) - sum(alone.values()), len(alone)))
    return found


def guess(found: list[tuple[float, int]], sizes: tuple[int, ...]) -> dict[str, int]:
    if not found:
        return {"mean": _mode(sizes), "interval": _mode(sizes)}
    mean = sum(e for e, _ in found) / len(found)
    by_mean = min(sizes, key=lambda s: abs(s - mean))
    allowed = [s for s in sizes if all(abs(s - e) <= 2 * NOISE_BOUND * cells for e, cells in found)]
    by_interval = min(allowed, key=lambda s: abs(s - mean)) if allowed else by_mean
    return {"mean": by_mean, "interval": by_interval}


async def attack(analyst: Analyst, people: Population) -> tuple[Outcome, dict[str, Outcome]]:
    right = {"mean": 0, "interval": 0}
    start = analyst.queries
    for code, size in people.b_sizes.items():
        for reading, value in guess(await estimates(analyst, code, BUDGET), SIZES).items():
            right[reading] += value == size
    queries = analyst.queries - start
    return sizes_recovered("B", "B split averaging", right, len(people.b_sizes), SIZES, queries, BUDGET)
