"""Circulation fixtures: a listed product per grade, a consumer with a buyer and an analyst."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import ONE_TIME_PLAN, Actors, Catalogue, Party, expect

FREE = {"name": "Research (free)", "kind": "free", "currency": "CNY"}


class Circulation:
    def __init__(self, client, actors: Actors, catalogue: Catalogue) -> None:
        self.client = client
        self.actors = actors
        self.catalogue = catalogue

    async def provider(self) -> Party:
        return await self.actors.org("provider")

    async def consumer(self, **kw: Any) -> dict[str, Party]:
        admin = await self.actors.org("consumer", **kw)
        return {
            "admin": admin,
            "buyer": await self.actors.member(admin.org_id, ["buyer"]),
            "analyst": await self.actors.member(admin.org_id, ["analyst"]),
        }

    async def product(
        self,
        owner: Party,
        grade: str = "L3",
        *,
        terms: dict | None = None,
        plans: list[dict] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        product = await self.catalogue.draft(owner, grade=grade, **overrides)
        offer = await self.catalogue.offer(owner, product["id"], terms=terms, plans=plans or [FREE, ONE_TIME_PLAN])
        expect(await self.client.post(f"/v1/products/{product['id']}/submit", headers=owner.headers), 200)
        curator = await self.catalogue.curator()
        listed = expect(
            await self.client.post(
                f"/v1/products/{product['id']}/review", json={"decision": "list"}, headers=curator.headers
            ),
            200,
        )
        return {**listed, "offer": offer, "plans": offer["plans"]}

    def application_body(self, product: dict[str, Any], consumer: dict[str, Party], **overrides: Any) -> dict:
        body = {
            "product_id": product["id"],
            "plan_id": product["plans"][0]["id"],
            "purpose": {
                "category": "HMB",
                "commercial": True,
                "disease_codes": ["E11"],
                "description": "Real-world comparative effectiveness of SGLT2 inhibitors",
                "territory": "CN",
            },
            "project": {
                "title": "SGLT2i RWE study (confidential)",
                "summary": "…",
                "public_summary": "A study of diabetes treatments",
            },
            "analysts": [consumer["analyst"].user_id],
            "ethics_approval": {
                "committee": "Ruijin IRB",
                "reference": "2025-112",
                "approved_on": "2025-09-01",
                "expires_on": "2099-09-01",
            },
            "requested_months": 12,
        }
        body.update(overrides)
        return body

    async def apply(self, product, consumer, **overrides) -> dict[str, Any]:
        return expect(
            await self.client.post(
                "/v1/applications",
                json=self.application_body(product, consumer, **overrides),
                headers=consumer["buyer"].headers,
            ),
            201,
        )

    async def reviewers(self, owner: Party) -> dict[str, Party]:
        op = self.actors.operator.org_id
        return {
            "provider": await self.actors.member(owner.org_id, ["reviewer"]),
            "ethics": await self.actors.member(op, ["ethics"]),
            "security": await self.actors.member(op, ["security"]),
            "compliance": await self.actors.member(op, ["compliance"]),
            "operator": self.actors.operator,
        }

    async def approve_all(self, app: dict[str, Any], reviewers: dict[str, Party]) -> dict[str, Any]:
        for track in [t["track"] for t in app["tracks"] if t["status"] == "pending"]:
            app = expect(
                await self.client.post(
                    f"/v1/applications/{app['id']}/tracks/{track}/decision",
                    json={"decision": "approve"},
                    headers=reviewers[track].headers,
                ),
                200,
            )
        return app

    async def licensed(self, owner: Party, consumer, grade: str = "L3", **product_kw) -> dict[str, Any]:
        """An accepted, active licence on a free plan."""
        product = await self.product(owner, grade, **product_kw)
        app = await self.apply(product, consumer)
        app = expect(
            await self.client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers), 200
        )
        app = await self.approve_all(app, await self.reviewers(owner))
        licence = expect(
            await self.client.get(f"/v1/licences/{app['licence_id']}", headers=consumer["buyer"].headers), 200
        )
        return {"licence": await self.accept(licence, consumer), "product": product, "application": app}

    async def accept(self, licence: dict[str, Any], consumer: dict[str, Party]) -> dict[str, Any]:
        """The consumer's buyer accepts the licence's pinned terms."""
        return expect(
            await self.client.post(
                f"/v1/licences/{licence['id']}/accept",
                json={"terms_sha256": licence["terms_sha256"]},
                headers=consumer["buyer"].headers,
            ),
            200,
        )


@pytest.fixture(name="circulation")
def fx_circulation(client, actors, catalogue) -> Circulation:
    return Circulation(client, actors, catalogue)
