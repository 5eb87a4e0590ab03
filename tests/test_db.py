"""Transactions that never lie: a failed commit is an error response and nothing is half-written."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, func, select

from catalog import audit, db
from catalog.orgs.models import Organisation
from tests.conftest import make_settings
from tests.support import Actors, expect, problem

pytestmark = pytest.mark.asyncio


class TestCommitFailure:
    async def test_a_failed_commit_answers_non_2xx_and_writes_nothing(self, client, actors: Actors, app) -> None:
        engine = app.state.engine.sync_engine
        failing = {"armed": True}

        def fail_commit(conn) -> None:
            if failing["armed"]:
                failing["armed"] = False
                raise RuntimeError("injected: the disk is full")

        event.listen(engine, "commit", fail_commit)
        try:
            body = {
                "name": "Doomed",
                "kind": "consumer",
                "jurisdiction": "CN",
                "org_type": "pharma",
                "for_profit": True,
            }
            response = await client.post("/v1/orgs", json=body, headers=actors.operator.headers)
        finally:
            event.remove(engine, "commit", fail_commit)
        assert response.status_code >= 500, response.text
        assert response.json()["code"] == "internal_error"
        async with app.state.sessions() as s:
            names = (await s.execute(select(Organisation.name))).scalars().all()
            actions = (await s.execute(select(audit.AuditEvent.action))).scalars().all()
        assert "Doomed" not in names
        assert actions.count("org.created") == 1  # only the operator's own creation at bootstrap


class TestConcurrentWrites:
    async def test_40_concurrent_writes_all_succeed_and_chain(self, client, actors: Actors, app) -> None:
        async def create(i: int):
            body = {
                "name": f"Concurrent {i}",
                "kind": "consumer",
                "jurisdiction": "CN",
                "org_type": "pharma",
                "for_profit": True,
            }
            return await client.post("/v1/orgs", json=body, headers=actors.operator.headers)

        responses = await asyncio.gather(*(create(i) for i in range(40)))
        assert [r.status_code for r in responses] == [201] * 40, [r.text for r in responses if r.status_code != 201]
        verified = expect(await client.get("/v1/audit/verify", headers=actors.operator.headers), 200)
        assert verified["valid"] is True
        async with app.state.sessions() as s:
            rows = (
                (await s.execute(select(audit.AuditEvent).where(audit.AuditEvent.action == "org.created")))
                .scalars()
                .all()
            )
            total = (await s.execute(select(func.count()).select_from(audit.AuditEvent))).scalar_one()
        concurrent = [r for r in rows if r.data and "Concurrent" in r.data]
        assert len(concurrent) == 40
        assert len({r.prev_hash for r in concurrent}) == 40
        assert sorted(r.seq for r in await _all(app)) == list(range(1, total + 1))


async def _all(app):
    async with app.state.sessions() as s:
        return (await s.execute(select(audit.AuditEvent))).scalars().all()


class TestSingleRead:
    async def test_the_key_lookup_reads_outside_any_transaction(self, app, actors: Actors) -> None:
        """single_read (auth's key lookup, every request) sends no BEGIN and no ROLLBACK: the one
        SELECT is its own transaction, on both databases."""
        async with db.single_read(app.state.engine) as conn:
            count = (await conn.execute(select(func.count()).select_from(Organisation))).scalar_one()
            raw = (await conn.get_raw_connection()).driver_connection
            if app.state.engine.dialect.name == "postgresql":
                assert not raw.is_in_transaction()
            else:
                assert not raw._live().in_transaction
        assert count >= 1
        # A write transaction afterwards still takes its lock: BEGIN IMMEDIATE on SQLite.
        async with db.write_transaction(app.state.sessions) as session:
            await session.execute(select(1))
            raw = (await (await session.connection()).get_raw_connection()).driver_connection
            if app.state.engine.dialect.name == "postgresql":
                assert raw.is_in_transaction()
            else:
                assert raw._live().in_transaction


class TestAFullPool:
    @pytest.fixture(name="settings")
    def fx_settings(self, database: str, tmp_path):
        return make_settings(tmp_path, database, LODE_DB_MAX_CONNECTIONS="2", LODE_DB_POOL_TIMEOUT_S="0.5")

    async def test_a_request_that_finds_no_free_connection_is_503_with_retry_after(
        self, client, actors: Actors, app
    ) -> None:
        engine = app.state.engine
        async with engine.connect() as first, engine.connect() as second:  # every connection busy
            await first.execute(select(1))
            await second.execute(select(1))
            busy = await client.get("/v1/me", headers=actors.operator.headers)
        problem(busy, 503, "database_busy")
        assert busy.headers["retry-after"] == "1"
        expect(await client.get("/v1/me", headers=actors.operator.headers), 200)  # served once one is free


class TestNoNetworkUnderAConnection:
    async def test_a_task_holding_a_connection_may_not_wait_on_the_network(self, app) -> None:
        async with app.state.sessions() as session:
            await session.execute(select(1))
            with pytest.raises(db.ConnectionHeldAcrossNetwork):
                db.ensure_no_connection_held("a network call")
        db.ensure_no_connection_held("a network call")  # closed: the connection went back

    async def test_another_tasks_connection_does_not_count(self, app) -> None:
        holding, done = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with app.state.engine.connect() as conn:
                await conn.execute(select(1))
                holding.set()
                await done.wait()

        holder = asyncio.create_task(hold())
        await holding.wait()
        try:
            db.ensure_no_connection_held("a network call")
        finally:
            done.set()
            await holder
