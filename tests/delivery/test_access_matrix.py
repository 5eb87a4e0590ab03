"""Every grade × mode × licence state × caller gets exactly the allowed outcome and code."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from catalog import db, policy
from catalog.access.models import Licence
from tests.support import expect

pytestmark = pytest.mark.asyncio

REQUESTS = {
    "download": None,
    "rows": {"table": "visits", "select": ["age", "sex"], "limit": 5},
    "aggregate": {"table": "visits", "group_by": ["sex"], "aggregates": [{"fn": "count"}]},
    "dp_aggregate": {"table": "visits", "group_by": ["sex"], "aggregates": [{"fn": "count"}], "epsilon": 0.1},
}


async def call(client, licence_id, party, mode):
    if mode == "download":
        return await client.get(f"/v1/licences/{licence_id}/files/visits.csv", headers=party.headers)
    return await client.post(f"/v1/licences/{licence_id}/query", json=REQUESTS[mode], headers=party.headers)


def allowed_code(grade: str, mode: str) -> str | None:
    """What an active licence's named analyst gets: None (200) or the refusal code."""
    rule = policy.rule(grade)
    if mode == "aggregate" and not rule.allows("aggregate") and rule.allows("dp_aggregate"):
        return "epsilon_required"  # at L5 an aggregate is only answered with ε
    return None if rule.allows(mode) else "grade_forbids_delivery"


STATES = {
    "active": {},
    "suspended": {"hold": True},
    "revoked": {"status": "revoked"},
    "expired": {"status": "expired"},
    "pending_payment": {"status": "pending_payment"},
    "not_started": {"starts_in_days": 5},
}
STATE_CODE = {
    "suspended": "licence_not_active",
    "revoked": "licence_revoked",
    "expired": "licence_expired",
    "pending_payment": "licence_not_active",
    "not_started": "licence_not_started",
}


@pytest.mark.parametrize("grade", ["L1", "L2", "L3", "L4", "L5"])
async def test_matrix(client, delivery, actors, app, grade) -> None:
    owner = await delivery.provider()
    product = await delivery.published(owner, grade)
    consumer = await delivery.consumer()
    licence = await delivery.licence_on(product, owner, consumer)
    other_member = consumer["buyer"]  # a member of the licensee without the analyst role
    other_org = (await delivery.consumer())["analyst"]
    lic = licence["id"]
    compliance = await actors.member(actors.operator.org_id, ["compliance"])
    today = db.utcnow().date()
    checked = 0
    for state, change in STATES.items():
        async with db.write_transaction(app.state.sessions) as session:
            values = {
                "status": change.get("status", "active"),
                "starts_on": today,
                "ends_on": today + timedelta(days=300),
            }
            if "starts_in_days" in change:
                values["starts_on"] = today + timedelta(days=change["starts_in_days"])
            await session.execute(update(Licence).where(Licence.id == lic).values(**values))
        if change.get("hold"):
            expect(
                await client.post(f"/v1/licences/{lic}/suspend", json={"reason": "matrix"}, headers=compliance.headers),
                200,
            )
        for mode in REQUESTS:
            response = await call(client, lic, consumer["analyst"], mode)
            expected = STATE_CODE.get(state) or allowed_code(grade, mode)
            if expected is None:
                assert response.status_code == 200, (grade, state, mode, response.text)
            else:
                assert response.json()["code"] == expected, (grade, state, mode, response.text)
                assert response.status_code == (422 if expected == "epsilon_required" else 403)
            assert (await call(client, lic, other_member, mode)).json()["code"] == "not_named_analyst", (grade, mode)
            assert (await call(client, lic, other_org, mode)).json()["code"] == "not_found", (grade, mode)
            checked += 1
        if change.get("hold"):
            expect(
                await client.post(
                    f"/v1/licences/{lic}/reinstate", json={"reason": "matrix"}, headers=compliance.headers
                ),
                200,
            )
    assert checked == len(STATES) * len(REQUESTS)
