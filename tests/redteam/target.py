"""The red team's target, for the tests and for ``bench/redteam_bench.py``: a listed L4 product whose
release is the synthetic population, and an active licence on a free, uncapped plan for one named
analyst — who then attacks through the query endpoint like any licensee."""

from __future__ import annotations

import functools

import msgspec

from catalog import policy
from tests.delivery.conftest import Delivery
from tests.redteam import population
from tests.redteam.analyst import Analyst
from tests.support import Actors, Catalogue, expect

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


def install(l4: policy.GradeRule) -> None:
    policy.install(policy.Policy(rules={**policy.DEFAULT_RULES, "L4": lifted(l4)}))


async def licensed_analyst(client, actors: Actors, catalogue: Catalogue) -> Analyst:
    """Publish the population at L4 and license an analyst to it: the attacker's only tool."""
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
    review = f"/v1/products/{product['id']}/review"
    expect(await client.post(review, json={"decision": "list"}, headers=curator.headers), 200)
    consumer = await delivery.consumer()
    licence = await delivery.licence_on({**product, "plans": offer["plans"]}, owner, consumer)
    return Analyst(client, licence["id"], consumer["analyst"].headers)
