"""The red team's suites against L4 with one defence at a time switched off: which defence stops which
attack (run by hand; prints figures, never passes or fails — ``tests/redteam/`` is the test).

    .venv/bin/python bench/redteam_bench.py [--configurations shipped,before,no-low-effect,…]

Configurations, all on one SQLite database and one licence of the red team's target:

    shipped         the grade policy as shipped
    before          L4 before its revision: cell-key perturbation and exact query-set refusals
    no-low-effect   the anonymiser with every atom's low-effect threshold at 0 (nothing dropped)
    no-noise        the anonymiser with noise layers of SD 10⁻⁶ (thresholds and the rest kept)
    k-floor         the anonymiser with its thresholds' floor at k = 10 instead of 20

Each suite prints its result (success rate, 95 % Wilson interval, queries) against its bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import command_line, served
from catalog import policy
from catalog.delivery import anonymiser
from tests.redteam import suite_a, suite_b, suite_c, suite_d
from tests.redteam import target as redteam
from tests.redteam.analyst import Analyst
from tests.support import Catalogue

SUITES = (suite_a.attack, suite_b.attack, suite_c.attack, suite_d.attack)


def shipped() -> policy.GradeRule:
    return policy.DEFAULT_RULES["L4"]


def anonymisation(**changes: object) -> policy.GradeRule:
    rule = shipped()
    assert rule.anonymisation is not None
    return msgspec.structs.replace(rule, anonymisation=msgspec.structs.replace(rule.anonymisation, **changes))


@contextlib.contextmanager
def no_low_effect() -> Iterator[None]:
    original = anonymiser.thresholds
    anonymiser.thresholds = lambda reading, *_: {a.key: 0.0 for a in reading.atoms}  # type: ignore[assignment]
    try:
        yield
    finally:
        anonymiser.thresholds = original  # type: ignore[assignment]


CONFIGURATIONS = {
    "shipped": (shipped, contextlib.nullcontext),
    "before": (lambda: redteam.weakened_l4_rule(shipped()), contextlib.nullcontext),
    "no-low-effect": (shipped, no_low_effect),
    "no-noise": (lambda: anonymisation(layer_sd=1e-6), contextlib.nullcontext),
    "k-floor": (lambda: anonymisation(min_persons=10), contextlib.nullcontext),
}


async def run(names: list[str], tmp: Path) -> None:
    async with served(f"sqlite+aiosqlite:///{tmp}/redteam.db", tmp / "sqlite") as (_, _, client, actors):
        started = time.perf_counter()
        licensed = await redteam.licensed_analyst(client, actors, Catalogue(client, actors))
        print(f"  published and licensed the target in {time.perf_counter() - started:.1f} s")
        for name in names:
            make_rule, patched = CONFIGURATIONS[name]
            redteam.install(make_rule())
            print(f"\n-- {name}")
            with patched():
                for attack in SUITES:
                    analyst = Analyst(client, licensed.licence_id, licensed.headers)  # fresh notes each time
                    started = time.perf_counter()
                    outcome, readings = await attack(analyst, redteam.people())
                    verdict = "BEATS its bound" if outcome.beats_bound else "within its bound"
                    print(f"  {outcome} — {verdict} ({time.perf_counter() - started:.0f} s)")
                    for reading in readings.values():
                        print(f"      {reading}")
        policy.install(policy.DEFAULT_POLICY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configurations", default=",".join(CONFIGURATIONS))
    args = parser.parse_args()
    names = [n.strip() for n in args.configurations.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGURATIONS]
    if unknown:
        raise SystemExit(f"unknown configurations {unknown}; choose from {', '.join(CONFIGURATIONS)}")
    print(command_line(__file__))
    with tempfile.TemporaryDirectory(prefix="lode-redteam-") as name:
        asyncio.run(run(names, Path(name)))


if __name__ == "__main__":
    main()
