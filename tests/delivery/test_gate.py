"""The gate's less travelled refusals, and what delivery leaves behind (usage, audit, budget)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from catalog import outbox
from catalog.audit import AuditEvent
from catalog.delivery import dp
from catalog.metering.models import EpsilonBudget
from tests.access.conftest import FREE
from tests.delivery.conftest import TABLE, TERMS, visits_csv
from tests.support import expect, problem

pytestmark = pytest.mark.asyncio
ROWS = {"table": "visits", "select": ["age"], "limit": 5}


class TestRefusals:
    async def test_enclave_only_terms_leave_downloads_and_rows_unlicensed(self, client, delivery, catalogue) -> None:
        owner = await delivery.provider()
        product = await catalogue.draft(owner, grade="L2", dictionary=[TABLE])
        offer = await catalogue.offer(
            owner, product["id"], plans=[FREE], terms={**TERMS, "local_conditions": ["enclave_only"]}
        )
        base = f"/v1/products/{product['id']}/releases"
        expect(await client.post(base, json={"version": "1"}, headers=owner.headers), 201)
        expect(await client.put(f"{base}/1/files/visits.csv", content=visits_csv(), headers=owner.headers), 201)
        expect(await client.post(f"{base}/1/publish", headers=owner.headers), 200)
        expect(await client.post(f"/v1/products/{product['id']}/submit", headers=owner.headers), 200)
        curator = await catalogue.curator()
        listed = expect(
            await client.post(
                f"/v1/products/{product['id']}/review", json={"decision": "list"}, headers=curator.headers
            ),
            200,
        )
        consumer = await delivery.consumer()
        licence = await delivery.licence_on({**listed, "plans": offer["plans"]}, owner, consumer)
        assert licence["modes"] == ["aggregate"]
        problem(await delivery.query(licence["id"], consumer["analyst"], ROWS), 403, "mode_not_licensed")
        problem(
            await client.get(f"/v1/licences/{licence['id']}/files/visits.csv", headers=consumer["analyst"].headers),
            403,
            "mode_not_licensed",
        )
        expect(
            await delivery.query(
                licence["id"], consumer["analyst"], {"table": "visits", "aggregates": [{"fn": "count"}]}
            ),
            200,
        )

    async def test_every_hold_is_named_and_each_cause_lifts_only_its_own(self, client, delivery, actors) -> None:
        """Two holds (the operator's, the provider's) are two rows of the gate's one read: both are
        named in the refusal, and access returns only when the last is lifted."""
        owner = await delivery.provider()
        product = await delivery.published(owner, "L1")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        lic = licence["id"]
        compliance = await actors.member(actors.operator.org_id, ["compliance"])
        reason = {"reason": "audit finding"}
        expect(await client.post(f"/v1/licences/{lic}/suspend", json=reason, headers=compliance.headers), 200)
        expect(await client.post(f"/v1/licences/{lic}/suspend", json=reason, headers=owner.headers), 200)
        refused = problem(await delivery.query(lic, consumer["analyst"], ROWS), 403, "licence_not_active")
        assert refused["holds"] == ["operator", "provider"]
        expect(await client.post(f"/v1/licences/{lic}/reinstate", json=reason, headers=owner.headers), 200)
        refused = problem(await delivery.query(lic, consumer["analyst"], ROWS), 403, "licence_not_active")
        assert refused["holds"] == ["operator"]
        expect(await client.post(f"/v1/licences/{lic}/reinstate", json=reason, headers=compliance.headers), 200)
        expect(await delivery.query(lic, consumer["analyst"], ROWS), 200)

    async def test_a_withdrawn_release_is_not_served(self, client, delivery) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L1")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        expect(await delivery.query(licence["id"], consumer["analyst"], ROWS), 200)
        expect(
            await client.post(
                f"/v1/products/{product['id']}/releases/1/withdraw", json={"reason": "consent"}, headers=owner.headers
            ),
            200,
        )
        problem(await delivery.query(licence["id"], consumer["analyst"], ROWS), 403, "release_withdrawn")
        problem(
            await delivery.query(licence["id"], consumer["analyst"], {**ROWS, "release": "1"}), 403, "release_withdrawn"
        )
        problem(
            await client.get(f"/v1/licences/{licence['id']}/files/visits.csv", headers=consumer["analyst"].headers),
            403,
            "release_withdrawn",
        )

    async def test_aggregates_fit_under_a_small_row_cap(self, client, delivery) -> None:
        owner = await delivery.provider()
        product = await delivery.published(
            owner, "L2", plans=[{"name": "Capped", "kind": "free", "currency": "CNY", "caps": {"rows_returned": 50}}]
        )
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        answer = expect(
            await delivery.query(
                licence["id"],
                consumer["analyst"],
                {"table": "visits", "group_by": ["district"], "aggregates": [{"fn": "count"}]},
            ),
            200,
        )
        assert len(answer["rows"]) == 4
        uncategorised = expect(
            await delivery.query(
                licence["id"],
                consumer["analyst"],
                {"table": "visits", "group_by": ["age"], "aggregates": [{"fn": "count"}], "limit": 10},
            ),
            200,
        )
        assert len(uncategorised["rows"]) <= 10
        # Without a limit an uncategorised grouping may return 100 rows: more than the cap has left.
        refused = problem(
            await delivery.query(
                licence["id"],
                consumer["analyst"],
                {"table": "visits", "group_by": ["age"], "aggregates": [{"fn": "count"}]},
            ),
            409,
            "quota_exceeded",
        )
        assert refused["dimension"] == "rows_returned"


class TestWhatDeliveryLeaves:
    async def test_a_query_is_audited_and_tells_billing(self, client, delivery, app) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L1")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        expect(await delivery.query(licence["id"], consumer["analyst"], ROWS), 200)
        async with app.state.sessions() as s:
            audited = (
                (await s.execute(select(AuditEvent).where(AuditEvent.action == "licence.queried"))).scalars().all()
            )
            events = (await s.execute(select(outbox.OutboxEvent.name))).scalars().all()
        assert len(audited) == 1 and audited[0].actor_user_id == consumer["analyst"].user_id
        assert '"rows":5' in audited[0].data and "age" in audited[0].data
        assert "usage.recorded" in events

    async def test_epsilon_stays_spent_once_noise_was_drawn(self, client, delivery, app, monkeypatch) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L5")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        body = {"table": "visits", "group_by": ["sex"], "aggregates": [{"fn": "count"}], "epsilon": 0.5}

        def broken_release(*args, **kwargs):
            raise RuntimeError("the process died after drawing noise")

        monkeypatch.setattr(dp, "release", broken_release)
        assert (await delivery.query(licence["id"], consumer["analyst"], body)).status_code == 500
        async with app.state.sessions() as s:
            budget = (await s.execute(select(EpsilonBudget))).scalar_one()
        assert budget.spent_micro == 500_000  # not refunded: a retry must not get a fresh draw for free

    async def test_epsilon_is_given_back_when_the_query_failed_before_noise(
        self, client, delivery, app, monkeypatch
    ) -> None:
        from catalog.delivery import compiler

        owner = await delivery.provider()
        product = await delivery.published(owner, "L5")
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        body = {"table": "visits", "group_by": ["sex"], "aggregates": [{"fn": "count"}], "epsilon": 0.5}
        original = compiler.dp_rows_sql

        def broken_sql(*args, **kwargs):
            compiled = original(*args, **kwargs)
            return compiler.Compiled(sql="SELECT * FROM no_such_table", params=[], columns=compiled.columns)

        monkeypatch.setattr(compiler, "dp_rows_sql", broken_sql)
        assert (await delivery.query(licence["id"], consumer["analyst"], body)).status_code >= 400
        async with app.state.sessions() as s:
            budget = (await s.execute(select(EpsilonBudget))).scalar_one()
        assert budget.spent_micro == 0
