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


def product_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "2型糖尿病患者电子病历队列 — Type 2 diabetes EHR cohort",
        "summary": "Longitudinal outpatient and inpatient records of adults with T2DM, 2018–2025.",
        "description": "De-identified EHR extract covering diagnoses, HbA1c and lipid panels.",
        "keywords": ["diabetes", "糖尿病", "HbA1c"],
        "data_types": ["ehr", "lab"],
        "therapeutic_areas": ["E11"],
        "standards": ["omop_cdm_5.4"],
        "grade": "L3",
        "legal_basis": "authorised_operation",
        "identified": False,
        "core_data": False,
        "jurisdiction": "CN",
        "population_size": 48210,
        "record_count": 1920400,
        "temporal_coverage": {"start": "2018-01-01", "end": "2025-06-30"},
        "spatial_coverage": ["CN-SH"],
        "update_frequency": "quarterly",
        "sources": [
            {"institution": "Ruijin Hospital", "system": "HIS", "share": 0.7},
            {"institution": "Zhongshan Hospital", "system": "LIS", "share": 0.3},
        ],
        "quality": {"completeness": 0.96, "conformance": 0.99, "plausibility": 0.98, "assessed_on": "2025-07-15"},
        "dictionary": [VISITS_TABLE],
    }
    body.update(overrides)
    return body


VISITS_TABLE: dict[str, Any] = {
    "table": "visits",
    "person_key": "person_id",
    "max_rows_per_person": 20,
    "fields": [
        {"name": "person_id", "type": "string", "description": "pseudonymous id", "sensitive": True},
        {"name": "age", "type": "integer", "description": "age at visit, years", "min": 0, "max": 120},
        {"name": "sex", "type": "string", "description": "sex", "categories": ["F", "M"]},
        {
            "name": "district",
            "type": "string",
            "description": "Shanghai district",
            "categories": ["Huangpu", "Xuhui", "Pudong"],
        },
        {
            "name": "hba1c",
            "type": "number",
            "description": "HbA1c, %",
            "min": 3,
            "max": 20,
            "code_system": "LOINC 4548-4",
        },
    ],
}
TERMS = {
    "use_conditions": ["HMB", "IRB", {"code": "DS", "params": {"diseases": ["E11"]}}],
    "local_conditions": ["no_linkage"],
    "max_term_months": 24,
    "clauses": "No re-identification.",
}
ONE_TIME_PLAN = {
    "name": "Annual research licence",
    "kind": "one_time",
    "currency": "CNY",
    "amount": 5000000,
    "term_months": 12,
}
FREE_PLAN = {"name": "Trial", "kind": "free", "currency": "CNY", "caps": {"rows_returned": 10000}}


class Catalogue:
    """Drives the catalogue API: a provider's product from draft to listed."""

    def __init__(self, client: httpx.AsyncClient, actors: Actors) -> None:
        self.client = client
        self.actors = actors
        self._curator: Party | None = None

    async def curator(self) -> Party:
        if self._curator is None:
            self._curator = await self.actors.member(self.actors.operator.org_id, ["curator", "security"])
        return self._curator

    async def draft(self, owner: Party, **overrides: Any) -> dict[str, Any]:
        return expect(
            await self.client.post("/v1/products", json=product_body(**overrides), headers=owner.headers), 201
        )

    async def offer(
        self,
        owner: Party,
        product_id: str,
        *,
        plans: list[dict[str, Any]] | None = None,
        terms: dict[str, Any] | None = None,
        providers: list[str] | None = None,
    ) -> dict[str, Any]:
        """Terms, plans and a revenue share: what a product needs before review."""
        c = self.client
        made_terms = expect(
            await c.put(f"/v1/products/{product_id}/terms", json=terms or TERMS, headers=owner.headers), 201
        )
        made_plans = [
            expect(await c.post(f"/v1/products/{product_id}/plans", json=p, headers=owner.headers), 201)
            for p in (plans or [FREE_PLAN, ONE_TIME_PLAN])
        ]
        weights = [{"org_id": org, "weight": 1} for org in (providers or [owner.org_id])]
        rule = expect(
            await c.put(
                f"/v1/products/{product_id}/revenue-share",
                json={"operator_bps": 1500, "fund_bps": 500, "providers": weights},
                headers=owner.headers,
            ),
            201,
        )
        return {"terms": made_terms, "plans": made_plans, "revenue_share": rule}

    async def listed(self, owner: Party, **overrides: Any) -> dict[str, Any]:
        product = await self.draft(owner, **overrides)
        offer = await self.offer(owner, product["id"])
        expect(await self.client.post(f"/v1/products/{product['id']}/submit", headers=owner.headers), 200)
        curator = await self.curator()
        listed = expect(
            await self.client.post(
                f"/v1/products/{product['id']}/review", json={"decision": "list"}, headers=curator.headers
            ),
            200,
        )
        return {**listed, "offer": offer}
