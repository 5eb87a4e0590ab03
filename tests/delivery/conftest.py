"""Delivery fixtures: a listed product per grade with a published release, and licences on it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import duckdb
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


def visits_parquet(rows: int, *, persons: str = "pairs") -> bytes:
    """``rows`` visits as Parquet, the same on every call: two visits a person (``persons="pairs"``),
    or (``"each"``) a person per visit whose 32-hex-digit id does not compress, so the file holds
    ≈ 40 bytes a row — big enough to outgrow every socket buffer between a server and its client."""
    person = {
        "pairs": "'p' || lpad(CAST(i // 2 AS VARCHAR), 7, '0')",
        "each": "printf('%016x%016x', hash(i), hash(-i))",
    }[persons]
    with tempfile.TemporaryDirectory() as tmp, duckdb.connect() as conn:
        target = Path(tmp) / "visits.parquet"
        conn.execute("SET enable_progress_bar = false")
        conn.execute(
            f"""COPY (
                SELECT {person} AS person_id, CAST(18 + hash(i) % 72 AS BIGINT) AS age,
                       ['F', 'M'][1 + CAST(hash(i * 3) % 2 AS INTEGER)] AS sex,
                       {DISTRICTS!r}[1 + CAST(hash(i * 5) % 4 AS INTEGER)] AS district,
                       round(5 + (hash(i * 7) % 150) / 10.0, 1) AS hba1c
                FROM range(?) AS t(i)
            ) TO ? (FORMAT parquet)""",
            [rows, str(target)],
        )
        return target.read_bytes()


TERMS = {"use_conditions": ["GRU"], "max_term_months": 24}


class Delivery(Circulation):
    async def published(
        self, owner: Party, grade: str, *, plans: list[dict] | None = None, file: tuple[str, bytes] | None = None
    ) -> dict[str, Any]:
        """A listed product with release 1 published: ``file`` (name, content) is its visits table,
        by default ``visits.csv`` of ``visits_csv()``."""
        product = await self.catalogue.draft(owner, grade=grade, dictionary=[TABLE])
        offer = await self.catalogue.offer(owner, product["id"], terms=TERMS, plans=plans or [FREE])
        await self.release(owner, product["id"], "1", file)
        expect(await self.client.post(f"/v1/products/{product['id']}/submit", headers=owner.headers), 200)
        curator = await self.catalogue.curator()
        listed = expect(
            await self.client.post(
                f"/v1/products/{product['id']}/review", json={"decision": "list"}, headers=curator.headers
            ),
            200,
        )
        return {**listed, "plans": offer["plans"]}

    async def release(self, owner: Party, product_id: str, version: str, file: tuple[str, bytes] | None = None) -> None:
        """Publish release ``version`` of the product with ``file`` (default: ``visits.csv``) as its visits table."""
        name, content = file or ("visits.csv", visits_csv())
        base = f"/v1/products/{product_id}/releases"
        expect(await self.client.post(base, json={"version": version}, headers=owner.headers), 201)
        expect(await self.client.put(f"{base}/{version}/files/{name}", content=content, headers=owner.headers), 201)
        expect(await self.client.post(f"{base}/{version}/publish", headers=owner.headers), 200)

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
