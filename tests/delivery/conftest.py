"""Delivery fixtures: a listed product per grade with a published release, and licences on it."""

from __future__ import annotations

from typing import Any

import pytest

from tests.access.conftest import FREE, Circulation
from tests.support import Party, expect

DISTRICTS = ["Huangpu", "Xuhui", "Pudong", "Chongming"]
TABLE: dict[str, Any] = {
    "table": "visits",
    "person_key": "person_id",
    "max_rows_per_person": 3,
    "fields": [
        {"name": "person_id", "type": "string", "description": "pseudonymous id", "sensitive": True},
        {"name": "age", "type": "integer", "description": "age, years", "min": 0, "max": 120},
        {"name": "sex", "type": "string", "description": "sex", "categories": ["F", "M"]},
        {"name": "district", "type": "string", "description": "district", "categories": DISTRICTS},
        {"name": "hba1c", "type": "number", "description": "HbA1c, %", "min": 3, "max": 20},
    ],
}
PERSONS = 63  # Huangpu 25, Xuhui 25, Pudong 10, Chongming 3


def district_of(person: int) -> str:
    if person < 25:
        return "Huangpu"
    if person < 50:
        return "Xuhui"
    if person < 60:
        return "Pudong"
    return "Chongming"


def visits_csv() -> bytes:
    lines = ["person_id,age,sex,district,hba1c"]
    for person in range(PERSONS):
        for visit in range(2):
            age = 30 + (person * 7) % 50
            hba1c = 5 + ((person + visit) % 30) / 10
            lines.append(f"p{person:03d},{age},{'FM'[person % 2]},{district_of(person)},{hba1c}")
    return ("\n".join(lines) + "\n").encode()


TERMS = {"use_conditions": ["GRU"], "max_term_months": 24}


class Delivery(Circulation):
    async def published(self, owner: Party, grade: str, *, plans: list[dict] | None = None) -> dict[str, Any]:
        product = await self.catalogue.draft(owner, grade=grade, dictionary=[TABLE])
        offer = await self.catalogue.offer(owner, product["id"], terms=TERMS, plans=plans or [FREE])
        base = f"/v1/products/{product['id']}/releases"
        expect(await self.client.post(base, json={"version": "1"}, headers=owner.headers), 201)
        expect(await self.client.put(f"{base}/1/files/visits.csv", content=visits_csv(), headers=owner.headers), 201)
        expect(await self.client.post(f"{base}/1/publish", headers=owner.headers), 200)
        expect(await self.client.post(f"/v1/products/{product['id']}/submit", headers=owner.headers), 200)
        curator = await self.catalogue.curator()
        listed = expect(
            await self.client.post(
                f"/v1/products/{product['id']}/review", json={"decision": "list"}, headers=curator.headers
            ),
            200,
        )
        return {**listed, "plans": offer["plans"]}

    async def licence_on(
        self, product: dict[str, Any], owner: Party, consumer: dict[str, Party], plan: int = 0
    ) -> dict[str, Any]:
        app = await self.apply(
            product,
            consumer,
            plan_id=product["plans"][plan]["id"],
            purpose={
                "category": "HMB",
                "commercial": True,
                "disease_codes": [],
                "description": "delivery tests",
                "territory": "CN",
            },
        )
        app = expect(
            await self.client.post(f"/v1/applications/{app['id']}/submit", headers=consumer["buyer"].headers), 200
        )
        app = await self.approve_all(app, await self.reviewers(owner))
        licence = expect(await self.client.get(f"/v1/licences/{app['licence_id']}", headers=owner.headers), 200)
        return expect(
            await self.client.post(
                f"/v1/licences/{licence['id']}/accept",
                json={"terms_sha256": licence["terms_sha256"]},
                headers=consumer["buyer"].headers,
            ),
            200,
        )

    async def query(self, licence_id: str, party: Party, body: dict[str, Any]):
        return await self.client.post(f"/v1/licences/{licence_id}/query", json=body, headers=party.headers)


@pytest.fixture(name="delivery")
def fx_delivery(client, actors, catalogue) -> Delivery:
    return Delivery(client, actors, catalogue)
