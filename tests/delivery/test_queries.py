"""Queries through the API: disclosure control at L4, the ε budget at L5, caps under concurrency,
and access cut on the very next request."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, update

from catalog.metering.models import EpsilonBudget, UsageCounter, UsageEvent
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


class TestDisclosureAtL4:
    async def test_small_cells_suppressed_perturbed_and_stable(self, client, delivery) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L4")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        first = expect(await delivery.query(licence["id"], consumer["analyst"], BY_DISTRICT), 200)
        second = expect(await delivery.query(licence["id"], consumer["analyst"], BY_DISTRICT), 200)
        assert first["rows"] == second["rows"] and first["suppressed"] == second["suppressed"]
        assert first["perturbed"] is True
        suppressed = {s["group"]["district"]: s["reason"] for s in first["suppressed"]}
        assert suppressed.get("Chongming") == "small_cell"
        assert len(suppressed) >= 2  # a lone suppressed cell would be rebuilt from the total
        chongming = next(r for r in first["rows"] if r["district"] == "Chongming")
        assert chongming["count"] is None and chongming["avg_hba1c"] is None
        total = expect(
            await delivery.query(
                licence["id"], consumer["analyst"], {"table": "visits", "aggregates": [{"fn": "count"}]}
            ),
            200,
        )
        assert total["perturbed"] is True

    async def test_query_set_size_control(self, client, delivery) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L4")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        for op in ("=", "!="):
            body = {
                "table": "visits",
                "aggregates": [{"fn": "count"}],
                "where": [{"field": "district", "op": op, "value": "Chongming"}],
            }
            problem(await delivery.query(licence["id"], consumer["analyst"], body), 422, "query_set_too_small")
        fine = {
            "table": "visits",
            "aggregates": [{"fn": "count"}],
            "where": [{"field": "district", "op": "=", "value": "Huangpu"}],
        }
        expect(await delivery.query(licence["id"], consumer["analyst"], fine), 200)

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
