"""Helpers that build the parties of a test through the public API (only bootstrap goes direct)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import httpx
from litestar import Litestar

from catalog import db
from catalog.orgs.service import OrgService
from catalog.settings import Settings

_counter = itertools.count(1)


class Party(NamedTuple):
    org_id: str
    user_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


def expect(response: Any, status: int) -> Any:
    assert response.status_code == status, f"{response.status_code} != {status}: {response.text}"
    return response.json() if response.content and "json" in response.headers.get("content-type", "") else None


def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, f"{response.status_code} != {status}: {response.text}"
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["code"] == code, body
    return body


@asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[None]:
    """Run an ASGI app's startup and shutdown in the current event loop."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await inbox.put({"type": "lifespan.startup"})
    started = await outbox.get()
    assert started["type"] == "lifespan.startup.complete", started
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await task


class Actors:
    def __init__(self, client: httpx.AsyncClient, app: Litestar, settings: Settings) -> None:
        self.client = client
        self.app = app
        self.settings = settings
        self.operator: Party

    async def bootstrap(self) -> Party:
        async with db.write_transaction(self.app.state.sessions) as session:
            result = await OrgService(session, None, self.settings.key_pepper).bootstrap(
                "Lode Operator", "admin@operator.test", "CN"
            )
        self.operator = Party(result.org_id, result.user_id, result.api_key)
        return self.operator

    async def org(
        self,
        kind: str,
        *,
        name: str | None = None,
        jurisdiction: str = "CN",
        org_type: str | None = None,
        for_profit: bool | None = None,
        verified: bool = True,
    ) -> Party:
        """A new organisation with an admin user and that admin's key."""
        n = next(_counter)
        body = {
            "name": name or f"{kind.title()} {n}",
            "kind": kind,
            "jurisdiction": jurisdiction,
            "org_type": org_type or {"provider": "hospital", "consumer": "pharma"}.get(kind, "other"),
            "for_profit": (kind == "consumer") if for_profit is None else for_profit,
        }
        org = expect(await self.client.post("/v1/orgs", json=body, headers=self.operator.headers), 201)
        if verified:
            expect(
                await self.client.post(
                    f"/v1/orgs/{org['id']}/verify", json={"status": "verified"}, headers=self.operator.headers
                ),
                200,
            )
        return await self.member(org["id"], ["admin"], by=self.operator)

    async def member(self, org_id: str, roles: list[str], *, by: Party | None = None) -> Party:
        """A new member of ``org_id`` with ``roles`` and its own key (added by the operator admin)."""
        by = by or self.operator
        n = next(_counter)
        user = expect(
            await self.client.post(
                f"/v1/orgs/{org_id}/members",
                json={"email": f"user{n}@{org_id.lower()}.test", "name": f"User {n}", "roles": roles},
                headers=by.headers,
            ),
            201,
        )
        key = expect(
            await self.client.post(
                f"/v1/orgs/{org_id}/api-keys", json={"user_id": user["id"], "name": "test"}, headers=by.headers
            ),
            201,
        )
        return Party(org_id, user["id"], key["secret"])
