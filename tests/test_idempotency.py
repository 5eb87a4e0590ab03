"""Idempotency-Key: a replay returns the first response; misuse is refused clearly."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar import Request, Response, post
from litestar.di import NamedDependency
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from catalog.auth import Principal
from catalog.idempotency import IdempotencyRecord, idempotent
from catalog.orgs.models import Organisation
from tests.support import Actors, expect, problem

pytestmark = pytest.mark.asyncio
BODY = {"name": "Fudan CRO", "kind": "consumer", "jurisdiction": "CN", "org_type": "cro", "for_profit": True}


async def org_count(sessions) -> int:
    async with sessions() as s:
        return (await s.execute(select(func.count()).select_from(Organisation))).scalar_one()


class TestIdempotencyKey:
    async def test_a_replay_returns_the_first_response_and_writes_once(self, client, actors: Actors, sessions):
        headers = {**actors.operator.headers, "Idempotency-Key": "create-fudan-1"}
        first = await client.post("/v1/orgs", json=BODY, headers=headers)
        second = await client.post("/v1/orgs", json=BODY, headers=headers)
        assert first.status_code == second.status_code == 201
        assert first.json() == second.json()
        assert second.headers["location"] == first.headers["location"]
        assert second.headers.get("idempotent-replayed") == "true"
        assert await org_count(sessions) == 2  # the operator and Fudan, once

    async def test_the_same_key_with_another_body_is_422(self, client, actors: Actors, sessions) -> None:
        headers = {**actors.operator.headers, "Idempotency-Key": "k-2"}
        expect(await client.post("/v1/orgs", json=BODY, headers=headers), 201)
        problem(
            await client.post("/v1/orgs", json={**BODY, "name": "Other"}, headers=headers),
            422,
            "idempotency_key_reused",
        )
        assert await org_count(sessions) == 2

    async def test_keys_are_per_organisation(self, client, actors: Actors) -> None:
        other_admin = await actors.member(actors.operator.org_id, ["admin"])
        headers = {"Idempotency-Key": "shared"}
        a = expect(await client.post("/v1/orgs", json=BODY, headers={**actors.operator.headers, **headers}), 201)
        b = await client.post("/v1/orgs", json=BODY, headers={**other_admin.headers, **headers})
        assert b.json()["id"] == a["id"]  # same operator org: the key is the organisation's

    async def test_a_failed_request_releases_its_key(self, client, actors: Actors) -> None:
        headers = {**actors.operator.headers, "Idempotency-Key": "k-3"}
        bad = {**BODY, "slug": "taken"}
        expect(
            await client.post(
                "/v1/orgs", json={**BODY, "slug": "taken", "name": "First"}, headers=actors.operator.headers
            ),
            201,
        )
        problem(await client.post("/v1/orgs", json=bad, headers=headers), 409, "slug_taken")
        problem(await client.post("/v1/orgs", json=bad, headers=headers), 409, "slug_taken")  # retried, not 409 busy

    async def test_a_concurrent_duplicate_is_409_in_progress(self, client, actors: Actors, monkeypatch) -> None:
        from catalog.orgs.service import OrgService

        release = asyncio.Event()
        entered = asyncio.Event()
        original = OrgService.create_org

        async def slow(self, data, **kw):
            entered.set()
            await release.wait()
            return await original(self, data, **kw)

        monkeypatch.setattr(OrgService, "create_org", slow)
        headers = {**actors.operator.headers, "Idempotency-Key": "k-4"}
        first = asyncio.create_task(client.post("/v1/orgs", json=BODY, headers=headers))
        await entered.wait()
        problem(await client.post("/v1/orgs", json=BODY, headers=headers), 409, "idempotency_in_progress")
        release.set()
        assert (await first).status_code == 201

    async def test_an_overlong_key_is_400(self, client, actors: Actors) -> None:
        err = problem(
            await client.post("/v1/orgs", json=BODY, headers={**actors.operator.headers, "Idempotency-Key": "k" * 300}),
            400,
            "validation_error",
        )
        assert err["errors"][0]["field"] == "Idempotency-Key"


class TestClaimedBeforeTheTransaction:
    async def test_a_route_that_began_its_transaction_first_is_refused_and_claims_nothing(
        self, app, client, actors: Actors, sessions
    ) -> None:
        @post("/v1/test/claim-late", status_code=201)
        async def claim_late(
            request: Request[Any, Any, Any], caller: NamedDependency[Principal], tx: NamedDependency[AsyncSession]
        ) -> Response[Any]:
            await tx.execute(select(1))  # the request's transaction begins before the claim: a bug

            async def run() -> Response[Any]:
                return Response({"ok": True}, status_code=201)

            return await idempotent(request, caller.org_id, tx, run)

        app.register(claim_late)
        headers = {**actors.operator.headers, "Idempotency-Key": "claimed-late"}
        problem(await client.post("/v1/test/claim-late", headers=headers), 500, "internal_error")
        async with sessions() as s:
            claims = (await s.execute(select(IdempotencyRecord.key))).scalars().all()
        assert claims == []
