"""The red team: each suite attacks the L4 query endpoint within its budget.

Against the shipped policy (``defended``) no suite may beat its bound; against the weakened
configuration each must — proof that the attack works and that the defences are what stop it.
"""

from __future__ import annotations

import pytest

from tests.redteam import suite_a, suite_b, suite_c, suite_d

pytestmark = pytest.mark.asyncio(loop_scope="module")  # the loop the shared target's client lives in


def judge(configuration: str, outcome, readings=None) -> None:
    print(f"\n[{configuration}] {outcome}")
    for reading in (readings or {}).values():
        print(f"    {reading}")
    if configuration == "defended":
        assert not outcome.beats_bound, f"the attack beats its bound: {outcome}"
    else:
        assert outcome.beats_bound, f"the attack failed against the weakened configuration: {outcome}"


# Against the weakened configuration the attack only has to be shown to work: 60 of the 200 victims
# (half of them flagged) prove it — 60 of 60 right is a 95 % interval of 94–100 % against a bound of
# 55 % — at less than a third of the cost. Against the defences, all 200.
WEAKENED_VICTIMS = 60


async def test_a_equality_oracle(target) -> None:
    victims = WEAKENED_VICTIMS if target["configuration"] == "weakened" else None
    outcome, readings = await suite_a.attack(target["analyst"], target["people"], victims)
    judge(target["configuration"], outcome, readings)


async def test_b_split_averaging(target) -> None:
    outcome, readings = await suite_b.attack(target["analyst"], target["people"])
    judge(target["configuration"], outcome, readings)


async def test_c_trackers_and_refusals(target) -> None:
    outcome, readings = await suite_c.attack(target["analyst"], target["people"])
    judge(target["configuration"], outcome, readings)


async def test_d_reconstruction(target) -> None:
    outcome, readings = await suite_d.attack(target["analyst"], target["people"])
    judge(target["configuration"], outcome, readings)
