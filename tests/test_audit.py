"""The hash-chained audit log: appended on commit, scoped on read, and verifiable."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, update

from catalog import audit, db
from tests.support import Actors, expect, problem

pytestmark = pytest.mark.asyncio


async def make_events(client, actors: Actors, n: int) -> None:
    for i in range(n):
        body = {"name": f"Org {i}", "kind": "consumer", "jurisdiction": "CN", "org_type": "pharma", "for_profit": True}
        expect(await client.post("/v1/orgs", json=body, headers=actors.operator.headers), 201)


class TestVerify:
    async def test_an_intact_chain_verifies(self, client, actors: Actors) -> None:
        await make_events(client, actors, 5)
        result = expect(await client.get("/v1/audit/verify", headers=actors.operator.headers), 200)
        assert result["valid"] is True and result["events"] == result["head_seq"] >= 8
        assert result["first_broken_seq"] is None

    async def test_an_altered_event_is_reported_at_its_seq(self, client, actors: Actors, sessions) -> None:
        await make_events(client, actors, 5)
        async with db.write_transaction(sessions) as s:
            await s.execute(
                update(audit.AuditEvent)
                .where(audit.AuditEvent.seq == 6)
                .values(data='{"kind":"consumer","name":"Forged"}')
            )
        result = expect(await client.get("/v1/audit/verify", headers=actors.operator.headers), 200)
        assert result["valid"] is False and result["first_broken_seq"] == 6

    async def test_a_changed_actor_is_reported(self, client, actors: Actors, sessions) -> None:
        await make_events(client, actors, 3)
        async with db.write_transaction(sessions) as s:
            await s.execute(
                update(audit.AuditEvent).where(audit.AuditEvent.seq == 5).values(actor_user_id="usr_someone_else")
            )
        result = expect(await client.get("/v1/audit/verify", headers=actors.operator.headers), 200)
        assert result["first_broken_seq"] == 5

    async def test_deleting_the_newest_events_is_reported_against_an_earlier_head(
        self, client, actors: Actors, sessions
    ) -> None:
        await make_events(client, actors, 6)
        async with sessions() as s:
            seq, digest = await audit.current_head(s)
        async with db.write_transaction(sessions) as s:
            # A careful attacker also rewinds the head row so the chain looks whole on its own.
            kept = seq - 3
            await s.execute(delete(audit.AuditEventOrg).where(audit.AuditEventOrg.seq > kept))
            await s.execute(delete(audit.AuditEvent).where(audit.AuditEvent.seq > kept))
            last = await s.get(audit.AuditEvent, kept)
            await s.execute(update(audit.AuditHead).values(seq=kept, hash=last.hash))
        alone = expect(await client.get("/v1/audit/verify", headers=actors.operator.headers), 200)
        assert alone["valid"] is True  # without an anchor a truncation cannot be seen...
        anchored = expect(
            await client.get(f"/v1/audit/verify?expected_head={seq}:{digest}", headers=actors.operator.headers), 200
        )
        assert anchored["valid"] is False and anchored["first_broken_seq"] == kept + 1  # ...with one it can
        by_hash = expect(
            await client.get(f"/v1/audit/verify?expected_head={digest}", headers=actors.operator.headers), 200
        )
        assert by_hash["valid"] is False

    async def test_deleting_events_without_rewinding_the_head_is_reported(self, client, actors, sessions) -> None:
        await make_events(client, actors, 3)
        async with db.write_transaction(sessions) as s:
            await s.execute(delete(audit.AuditEventOrg).where(audit.AuditEventOrg.seq == 4))
            await s.execute(delete(audit.AuditEvent).where(audit.AuditEvent.seq == 4))
        result = expect(await client.get("/v1/audit/verify", headers=actors.operator.headers), 200)
        assert result["valid"] is False and result["first_broken_seq"] == 4


class TestRead:
    async def test_events_carry_every_field_and_chain(self, client, actors: Actors) -> None:
        await make_events(client, actors, 2)
        page = expect(await client.get("/v1/audit?limit=2", headers=actors.operator.headers), 200)
        newest, older = page["items"]
        assert newest["prev_hash"] == older["hash"] and newest["seq"] == older["seq"] + 1
        assert newest["action"] == "org.created" and newest["occurred_at"].endswith("Z")
        assert set(newest) >= {
            "seq",
            "occurred_at",
            "actor_user_id",
            "actor_org_id",
            "org_ids",
            "action",
            "subject_type",
            "subject_id",
            "data",
            "prev_hash",
            "hash",
        }
        following = expect(
            await client.get(f"/v1/audit?limit=2&cursor={page['next_cursor']}", headers=actors.operator.headers), 200
        )
        assert following["items"][0]["seq"] == older["seq"] - 1

    async def test_others_see_only_events_concerning_their_org(self, client, actors: Actors) -> None:
        a = await actors.org("consumer")
        b = await actors.org("consumer")
        seen = expect(await client.get("/v1/audit?limit=500", headers=a.headers), 200)["items"]
        assert seen and all(a.org_id in e["org_ids"] for e in seen)
        assert not any(b.org_id in e["org_ids"] for e in seen)

    async def test_a_rolled_back_request_leaves_no_event(self, client, actors: Actors) -> None:
        head = expect(await client.get("/v1/audit/verify", headers=actors.operator.headers), 200)["head_seq"]
        body = {"name": "X", "kind": "operator", "jurisdiction": "CN", "org_type": "other", "for_profit": False}
        problem(await client.post("/v1/orgs", json=body, headers=actors.operator.headers), 409, "operator_exists")
        after = expect(await client.get("/v1/audit/verify", headers=actors.operator.headers), 200)
        assert after["head_seq"] == head and after["valid"]
