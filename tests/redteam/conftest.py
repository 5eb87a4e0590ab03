"""The red team's target: a listed L4 product whose release is the synthetic population, and an
active licence on a free, uncapped plan for one named analyst — who then attacks through the query
endpoint like any licensee.

Each suite runs against two configurations:

* ``defended`` — the grade policy as shipped (on SQLite and on PostgreSQL);
* ``weakened`` — L4 with today's defences switched off (``weakened_l4_rule``), on SQLite only: the
  answers do not depend on the database, and this run only proves that the attack works and that
  the defences are what stop it.

The daily cap on L4 queries is lifted in both: the suites measure the anonymisation itself within
their own query budgets (the cap is one more layer on top).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from catalog import policy
from tests.delivery.conftest import Delivery
from tests.redteam import population
from tests.redteam.analyst import Analyst
from tests.support import expect

FREE = {"name": "Red team (free, uncapped)", "kind": "free", "currency": "CNY"}
TERMS = {"use_conditions": ["GRU"], "max_term_months": 24}


@functools.cache
def people() -> population.Population:
    return population.build()


def weakened_l4_rule(rule: policy.GradeRule) -> policy.GradeRule:
    """L4 as it was before its revision: no anonymisation, but exact-k query-set refusals, cell-key
    perturbation from the contributing rows, secondary suppression and the dominance rule."""
    return msgspec.structs.replace(
        rule,
        anonymisation=None,
        perturbation=True,
        query_set_control=True,
        secondary_suppression=True,
        dominance=policy.Dominance(n=2, share=0.9),
    )


def lifted(rule: policy.GradeRule) -> policy.GradeRule:
    """The daily cap out of the way: each suite has its own budget."""
    if rule.anonymisation is None:
        return rule
    return msgspec.structs.replace(rule, anonymisation=msgspec.structs.replace(rule.anonymisation, daily_queries=10**9))


@pytest.fixture(params=["defended", "weakened"], name="configuration")
def fx_configuration(request: pytest.FixtureRequest, database: str) -> Iterator[str]:
    if request.param == "weakened" and not database.startswith("sqlite"):
        pytest.skip("the weakened configuration runs on SQLite only: answers do not depend on the database")
    yield request.param
    policy.install(policy.DEFAULT_POLICY)


@pytest.fixture(name="target")
async def fx_target(client, actors, catalogue, app, configuration) -> dict[str, Any]:
    rules = dict(policy.DEFAULT_RULES)
    rules["L4"] = lifted(rules["L4"])
    if configuration == "weakened":
        rules["L4"] = weakened_l4_rule(rules["L4"])
    policy.install(policy.Policy(rules=rules))
    delivery = Delivery(client, actors, catalogue)
    owner = await delivery.provider()
    product = await catalogue.draft(owner, grade="L4", dictionary=[population.TABLE])
    offer = await catalogue.offer(owner, product["id"], terms=TERMS, plans=[FREE])
    base = f"/v1/products/{product['id']}/releases"
    expect(await client.post(base, json={"version": "1"}, headers=owner.headers), 201)
    expect(await client.put(f"{base}/1/files/people.csv", content=people().csv, headers=owner.headers), 201)
    expect(await client.post(f"{base}/1/publish", headers=owner.headers), 200)
    expect(await client.post(f"/v1/products/{product['id']}/submit", headers=owner.headers), 200)
    curator = await catalogue.curator()
    expect(
        await client.post(f"/v1/products/{product['id']}/review", json={"decision": "list"}, headers=curator.headers),
        200,
    )
    consumer = await delivery.consumer()
    licence = await delivery.licence_on({**product, "plans": offer["plans"]}, owner, consumer)
    return {
        "analyst": Analyst(client, licence["id"], consumer["analyst"].headers),
        "people": people(),
        "configuration": configuration,
    }
