"""Queries through the API: disclosure control at L4, the ε budget at L5, caps under concurrency,
and access cut on the very next request."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from sqlalchemy import select, update

from catalog import policy
from catalog.metering.models import EpsilonBudget, UsageCounter, UsageEvent
from tests.delivery.conftest import DISTRICTS
from tests.support import expect, problem

pytestmark = pytest.mark.asyncio

BY_DISTRICT = {
    "table": "visits",
    "group_by": ["district"],
    "aggregates": [{"fn": "count"}, {"fn": "avg", "field": "hba1c"}],
}


class TestRows:
    async def test_rows_name_the_release_and_meter_the_rows(self, client, delivery, app) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L2")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        answer = expect(
            await delivery.query(
                licence["id"],
                consumer["analyst"],
                {
                    "table": "visits",
                    "select": ["person_id", "age"],
                    "where": [{"field": "district", "op": "=", "value": "Chongming"}],
                    "order_by": [{"field": "age"}],
                    "limit": 50,
                },
            ),
            200,
        )
        assert answer["release"] == "1" and answer["mode"] == "rows" and answer["columns"] == ["person_id", "age"]
        assert len(answer["rows"]) == 6
        async with app.state.sessions() as s:
            events = (await s.execute(select(UsageEvent).where(UsageEvent.licence_id == licence["id"]))).scalars().all()
        assert {e.dimension: e.quantity for e in events} == {"queries": 1, "rows_returned": 6}
        assert all(e.analyst_id == consumer["analyst"].user_id and e.source == "server" for e in events)

    async def test_sensitive_columns_are_refused_at_l3(self, client, delivery) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L3")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        for body in (
            {"table": "visits", "select": ["person_id"]},
            {"table": "visits", "select": ["age"], "where": [{"field": "person_id", "op": "=", "value": "p001"}]},
        ):
            problem(await delivery.query(licence["id"], consumer["analyst"], body), 403, "sensitive_column")

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"table": "visits; DROP TABLE x", "select": ["age"]}, "table"),
            ({"table": "nope", "select": ["age"]}, "table"),
            ({"table": "visits", "select": ["age; DROP TABLE visits"]}, "select.0"),
            ({"table": "visits", "select": ["salary"]}, "select.0"),
            (
                {"table": "visits", "select": ["age"], "where": [{"field": "age", "op": "= 1 OR 1=1", "value": 1}]},
                "where.0.op",
            ),
            ({"table": "visits", "select": ["age"], "limit": -1}, "limit"),
            ({"table": "visits", "select": ["age"], "limit": 10_000_000}, "limit"),
        ],
    )
    async def test_injection_and_bad_queries_are_400(self, client, delivery, body, field) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L1")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        err = problem(await delivery.query(licence["id"], consumer["analyst"], body), 400, "validation_error")
        assert field in [e["field"] for e in err["errors"]], err

    async def test_a_value_cannot_inject(self, client, delivery) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L1")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        answer = expect(
            await delivery.query(
                licence["id"],
                consumer["analyst"],
                {
                    "table": "visits",
                    "select": ["age"],
                    "where": [{"field": "district", "op": "=", "value": "x' OR '1'='1"}],
                },
            ),
            200,
        )
        assert answer["rows"] == []


@pytest.mark.parametrize("grade", ["L2", "L3"])
async def test_l2_and_l3_aggregates_keep_plain_k_suppression(client, delivery, grade) -> None:
    """Below L4 nothing of the anonymiser applies: exact values, cells of fewer than k = 10 persons
    withheld, a condition that removes three persons answered as asked (Huangpu 25, Xuhui 25, Pudong
    10, Chongming 3 persons; two visits each)."""
    owner = await delivery.provider()
    product = await delivery.published(owner, grade)
    consumer = await delivery.consumer()
    licence = await delivery.licence_on(product, owner, consumer)
    answer = expect(await delivery.query(licence["id"], consumer["analyst"], BY_DISTRICT), 200)
    # count counts rows (two visits a person) below L4; k counts persons, so Pudong's 10 are released
    counts = {r["district"]: r["count"] for r in answer["rows"]}
    assert counts == {"Huangpu": 50, "Xuhui": 50, "Pudong": 20, "Chongming": None}
    assert {(s["group"]["district"], s["reason"]) for s in answer["suppressed"]} == {("Chongming", "small_cell")}
    assert answer["perturbed"] is False and answer["noise_sd"] is None
    assert answer["low_effect"] == [] and answer["snapped"] == []
    but_three = {
        "table": "visits",
        "aggregates": [{"fn": "count"}],
        "where": [{"field": "district", "op": "!=", "value": "Chongming"}],
    }
    exact = expect(await delivery.query(licence["id"], consumer["analyst"], but_three), 200)
    assert exact["rows"] == [{"count": 120}] and exact["low_effect"] == []


class TestAnonymisedAtL4:
    """L4 answers through the anonymiser: the fixture's districts hold 25, 25, 10 and 3 persons."""

    async def licensed(self, delivery) -> tuple[dict, dict]:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L4")
        consumer = await delivery.consumer()
        return await delivery.licence_on(product, owner, consumer), consumer

    async def test_small_cells_are_withheld_and_every_value_is_noisy_and_stable(self, client, delivery) -> None:
        licence, consumer = await self.licensed(delivery)
        first = expect(await delivery.query(licence["id"], consumer["analyst"], BY_DISTRICT), 200)
        second = expect(await delivery.query(licence["id"], consumer["analyst"], BY_DISTRICT), 200)
        assert first == second and first["perturbed"] is True
        released = {r["district"]: r for r in first["rows"]}
        assert set(released) <= {"Huangpu", "Xuhui"}  # 10 and 3 persons are under any threshold
        withheld = {s["group"]["district"] for s in first["suppressed"]}
        # Every declared district not released is listed, held by anyone or not: absence tells nothing.
        assert withheld == set(DISTRICTS) - set(released)
        for row, sds in zip(first["rows"], first["noise_sd"], strict=True):
            assert sds["count"] > 0 and sds["avg_hba1c"] > 0
            assert abs(row["count"] - 25) <= 5 * sds["count"]

    async def test_a_condition_that_singles_out_a_few_persons_is_answered_as_if_absent(self, client, delivery) -> None:
        licence, consumer = await self.licensed(delivery)
        everyone = {"table": "visits", "aggregates": [{"fn": "count"}]}
        but_three = {**everyone, "where": [{"field": "district", "op": "!=", "value": "Chongming"}]}
        plain = expect(await delivery.query(licence["id"], consumer["analyst"], everyone), 200)
        padded = expect(await delivery.query(licence["id"], consumer["analyst"], but_three), 200)
        assert padded["rows"] == plain["rows"]  # the same count, the same noise: nothing to subtract
        assert padded["low_effect"] == [{"condition": "where.0", "field": "district", "value": None, "cells": None}]

    async def test_a_tiny_population_is_withheld_not_refused(self, client, delivery) -> None:
        licence, consumer = await self.licensed(delivery)
        for op in ("=", "!="):
            body = {
                "table": "visits",
                "aggregates": [{"fn": "count"}],
                "where": [{"field": "district", "op": op, "value": "Chongming"}],
            }
            answer = expect(await delivery.query(licence["id"], consumer["analyst"], body), 200)
            if op == "=":
                assert answer["rows"] == [] and answer["suppressed"][0]["reason"] == "small_cell"

    async def test_ranges_are_snapped_to_the_grid_and_one_sided_bounds_refused(self, client, delivery) -> None:
        licence, consumer = await self.licensed(delivery)
        body = {
            "table": "visits",
            "aggregates": [{"fn": "count"}],
            "where": [{"field": "age", "op": "between", "value": [31, 47]}],
        }
        answer = expect(await delivery.query(licence["id"], consumer["analyst"], body), 200)
        assert answer["snapped"] == [{"condition": "where.0", "low": 0, "high": 50}]
        one_sided = {**body, "where": [{"field": "age", "op": ">=", "value": 40}]}
        refused = problem(await delivery.query(licence["id"], consumer["analyst"], one_sided), 400, "validation_error")
        assert refused["errors"][0]["field"] == "where.0.op"
        counted = {"table": "visits", "aggregates": [{"fn": "count", "field": "age"}]}
        refused = problem(await delivery.query(licence["id"], consumer["analyst"], counted), 400, "validation_error")
        assert refused["errors"][0]["field"] == "aggregates.0.field"

    async def test_publish_measures_the_columns_that_single_persons_out(self, client, delivery) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L4")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        release = expect(await client.get(f"/v1/products/{product['id']}/releases/1"), 200)
        measured = release["tables"]["visits"]["uniqueness"]
        assert "person_id" not in measured and measured["sex"] == measured["district"] == 0.0
        assert measured["age"] > 0.5  # 63 persons over 50 ages: most persons' age is theirs alone
        for body in (
            {"table": "visits", "aggregates": [{"fn": "count"}], "where": [{"field": "age", "op": "=", "value": 44}]},
            {"table": "visits", "aggregates": [{"fn": "count"}], "group_by": ["age"]},
        ):
            refused = problem(await delivery.query(licence["id"], consumer["analyst"], body), 403, "isolating_column")
            assert refused["errors"][0]["message"].startswith("age singles persons out")
        ranged = {
            "table": "visits",
            "aggregates": [{"fn": "count"}],
            "where": [{"field": "age", "op": "between", "value": [0, 99]}],
        }
        expect(await delivery.query(licence["id"], consumer["analyst"], ranged), 200)

    async def test_the_daily_cap_answers_429_until_midnight(self, client, delivery) -> None:
        l4 = policy.rule("L4")
        assert l4.anonymisation is not None
        capped = msgspec.structs.replace(l4, anonymisation=msgspec.structs.replace(l4.anonymisation, daily_queries=2))
        policy.install(policy.Policy(rules={**policy.DEFAULT_RULES, "L4": capped}))
        try:
            licence, consumer = await self.licensed(delivery)
            for _ in range(2):
                expect(await delivery.query(licence["id"], consumer["analyst"], BY_DISTRICT), 200)
            refused = await delivery.query(licence["id"], consumer["analyst"], BY_DISTRICT)
            body = problem(refused, 429, "daily_query_limit")
            assert body["cap"] == 2 and 0 < int(refused.headers["retry-after"]) <= 86_401
        finally:
            policy.install(policy.DEFAULT_POLICY)

    async def test_only_count_sum_avg(self, client, delivery) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L4")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        body = {"table": "visits", "aggregates": [{"fn": "max", "field": "age"}]}
        problem(await delivery.query(licence["id"], consumer["analyst"], body), 403, "grade_forbids_delivery")


class TestBudgetAtL5:
    DP = {"table": "visits", "group_by": ["sex"], "aggregates": [{"fn": "count"}], "epsilon": 0.5}

    async def test_six_queries_then_refused_and_shared_by_a_second_licence(self, client, delivery, app) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L5")
        consumer = await delivery.consumer()
        first = await delivery.licence_on(product, owner, consumer)
        problem(
            await delivery.query(first["id"], consumer["analyst"], {**self.DP, "epsilon": None}),
            422,
            "epsilon_required",
        )
        problem(
            await delivery.query(first["id"], consumer["analyst"], {**self.DP, "epsilon": 0.6}),
            422,
            "epsilon_too_large",
        )
        for _ in range(5):
            answer = expect(await delivery.query(first["id"], consumer["analyst"], self.DP), 200)
            assert answer["epsilon_spent"] == 0.5 and {r["sex"] for r in answer["rows"]} == {"F", "M"}
        second = await delivery.licence_on(product, owner, consumer)
        expect(await delivery.query(second["id"], consumer["analyst"], self.DP), 200)  # the sixth, on another licence
        problem(await delivery.query(first["id"], consumer["analyst"], self.DP), 409, "budget_exhausted")
        budget = expect(await client.get(f"/v1/licences/{second['id']}/budget", headers=consumer["buyer"].headers), 200)
        assert (budget["total"], budget["spent"], budget["left"]) == (3.0, 3.0, 0.0)

    async def test_a_budget_opened_under_a_looser_policy_obeys_the_policy_now(self, client, delivery, app) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L5")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        expect(await delivery.query(licence["id"], consumer["analyst"], self.DP), 200)
        async with app.state.sessions.begin() as s:  # as if the grade once allowed ε = 10 in all
            await s.execute(update(EpsilonBudget).values(total_micro=10_000_000, spent_micro=2_800_000))
        problem(await delivery.query(licence["id"], consumer["analyst"], self.DP), 409, "budget_exhausted")
        budget = expect(
            await client.get(f"/v1/licences/{licence['id']}/budget", headers=consumer["buyer"].headers), 200
        )
        assert (budget["total"], budget["left"]) == (3.0, pytest.approx(0.2))

    async def test_twenty_concurrent_queries_never_overspend(self, client, delivery, app) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L5")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        responses = await asyncio.gather(
            *(delivery.query(licence["id"], consumer["analyst"], self.DP) for _ in range(20))
        )
        codes = sorted(r.status_code for r in responses)
        assert codes.count(200) == 6 and codes.count(409) == 14, [r.text for r in responses if r.status_code >= 500]
        async with app.state.sessions() as s:
            budget = (await s.execute(select(EpsilonBudget))).scalar_one()
        assert budget.spent_micro == 3_000_000 == budget.total_micro


class TestCaps:
    async def test_a_cap_of_100_rows_holds_under_30_concurrent_10_row_queries(self, client, delivery, app) -> None:
        owner = await delivery.provider()
        product = await delivery.published(
            owner, "L1", plans=[{"name": "Capped", "kind": "free", "currency": "CNY", "caps": {"rows_returned": 100}}]
        )
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        body = {"table": "visits", "select": ["age"], "limit": 10}
        responses = await asyncio.gather(*(delivery.query(licence["id"], consumer["analyst"], body) for _ in range(30)))
        assert sorted(r.status_code for r in responses) == [200] * 10 + [409] * 20
        assert {r.json()["code"] for r in responses if r.status_code == 409} == {"quota_exceeded"}
        async with app.state.sessions() as s:
            used = (
                await s.execute(select(UsageCounter.used).where(UsageCounter.dimension == "rows_returned"))
            ).scalar_one()
        assert used == 100

    async def test_unused_reservation_is_given_back(self, client, delivery, app) -> None:
        owner = await delivery.provider()
        product = await delivery.published(
            owner, "L1", plans=[{"name": "Capped", "kind": "free", "currency": "CNY", "caps": {"rows_returned": 100}}]
        )
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        body = {
            "table": "visits",
            "select": ["age"],
            "where": [{"field": "district", "op": "=", "value": "Chongming"}],
            "limit": 20,
        }
        for _ in range(5):  # each reserves 20 but returns 6 rows
            expect(await delivery.query(licence["id"], consumer["analyst"], body), 200)
        async with app.state.sessions() as s:
            used = (
                await s.execute(select(UsageCounter.used).where(UsageCounter.dimension == "rows_returned"))
            ).scalar_one()
        assert used == 30


class TestCutOff:
    async def test_revocation_a_hold_expiry_and_a_removed_analyst_cut_access_at_once(
        self, client, delivery, actors
    ) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L2")
        consumer = await delivery.consumer()
        body = {"table": "visits", "select": ["age"], "limit": 1}
        held = await delivery.licence_on(product, owner, consumer)
        expect(await delivery.query(held["id"], consumer["analyst"], body), 200)
        expect(
            await client.post(f"/v1/licences/{held['id']}/suspend", json={"reason": "x"}, headers=owner.headers), 200
        )
        problem(await delivery.query(held["id"], consumer["analyst"], body), 403, "licence_not_active")
        revoked = await delivery.licence_on(product, owner, consumer)
        expect(await delivery.query(revoked["id"], consumer["analyst"], body), 200)
        expect(
            await client.post(f"/v1/licences/{revoked['id']}/revoke", json={"reason": "x"}, headers=owner.headers), 200
        )
        problem(await delivery.query(revoked["id"], consumer["analyst"], body), 403, "licence_revoked")
        removed = await delivery.licence_on(product, owner, consumer)
        expect(await delivery.query(removed["id"], consumer["analyst"], body), 200)
        admin = consumer["admin"]
        expect(
            await client.patch(
                f"/v1/orgs/{admin.org_id}/members/{consumer['analyst'].user_id}",
                json={"roles": ["buyer"]},
                headers=admin.headers,
            ),
            200,
        )
        problem(await delivery.query(removed["id"], consumer["analyst"], body), 403, "not_named_analyst")
