"""How a suite's result is judged: a success rate with its 95 % Wilson interval against a bound.

A defence *holds* when the attack's success rate is not significantly above the bound — the lower
end of the 95 % interval is at or below it (chance + 5 points for A and D, the prior mode for B and
C). An attack *works* (against the weakened configuration) when that lower end is above the bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Outcome:
    suite: str
    correct: int
    trials: int
    bound: float
    queries: int
    budget: str
    informed: tuple[int, int] | None = None  # (right, of) among the targets the reading had evidence on

    @property
    def rate(self) -> float:
        return self.correct / self.trials

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.correct, self.trials)

    @property
    def beats_bound(self) -> bool:
        return self.interval[0] > self.bound

    def __str__(self) -> str:
        low, high = self.interval
        evidence = ""
        if self.informed is not None:
            right, of = self.informed
            evidence = f"; with evidence on {of}: {right}/{of} right" if of else "; no evidence on any"
        return (
            f"{self.suite}: {self.correct}/{self.trials} = {self.rate:.1%} (95% CI {low:.1%}–{high:.1%}), "
            f"bound {self.bound:.1%}, {self.queries} queries ({self.budget}){evidence}"
        )


def sizes_recovered(
    suite: str, title: str, right: dict[str, int], n: int, sizes: tuple[int, ...], queries: int, budget: int
) -> tuple[Outcome, dict[str, Outcome]]:
    """Suites B and C: each reading's groups whose size it got right, against always guessing the
    prior mode (one size in ``len(sizes)``); the suite's outcome is the best reading's."""
    used = f"≤ {budget} per group; {queries / n:.0f} used on average"
    bound = 1 / len(sizes)
    readings = {name: Outcome(f"{suite}/{name}", c, n, bound, queries, used) for name, c in right.items()}
    best = max(readings.values(), key=lambda o: o.correct)
    return Outcome(f"{title} (best: {best.suite})", best.correct, n, bound, queries, used), readings


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
