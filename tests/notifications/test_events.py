"""Which events circulation, delivery and publishing tell, and to whom: each goes to the parties
entitled to see its subject and no one else; reminders and thresholds are told exactly once."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from catalog.access import sweep as licence_sweep
from catalog.access.models import Licence
from catalog.db import utcnow, write_transaction
from catalog.outbox import JobContext
from tests.delivery.conftest import Delivery
from tests.notifications.conftest import register
from tests.support import Party, expect


@pytest.fixture(name="delivery")
def fx_delivery(client, actors, catalogue) -> Delivery:
    return Delivery(client, actors, catalogue)


async def feed(client, party: Party) -> list[dict[str, Any]]:
    return expect(await client.get("/v1/notifications?limit=500", headers=party.headers), 200)["items"]


def about(items: list[dict[str, Any]]) -> set[str]:
    """Every id the notices name: their subjects and the ids in their bodies."""
    ids = set()
    for n in items:
        ids.add(n["subject"]["id"])
        ids |= {v for k, v in n["data"].items() if k.endswith("_id") and isinstance(v, str)}
    return ids


async def sweep(app) -> None:
    await licence_sweep.sweep(JobContext(sessions=app.state.sessions, services={}))


async def test_no_event_about_one_organisations_application_or_licence_reaches_another(
    client, actors, catalogue, circulation, receivers, dispatcher
):
    owner = await circulation.provider()
    co_provider = await actors.org("provider")
    alpha, beta = await circulation.consumer(), await circulation.consumer()
    hooks = {name: receivers() for name in ("alpha", "beta", "owner", "co")}
    for name, party in (("alpha", alpha["admin"]), ("beta", beta["admin"]), ("owner", owner), ("co", co_provider)):
        await register(client, party, hooks[name].url)
    # An L3 product whose revenue is shared with a second hospital.
    product = await catalogue.draft(owner, grade="L3")
    offer = await catalogue.offer(owner, product["id"], plans=[{"name": "Free", "kind": "free", "currency": "CNY"}],
                                  providers=[owner.org_id, co_provider.org_id])  # fmt: skip
    expect(await client.post(f"/v1/products/{product['id']}/submit", headers=owner.headers), 200)
    curator = await catalogue.curator()
    expect(
        await client.post(f"/v1/products/{product['id']}/review", json={"decision": "list"}, headers=curator.headers),
        200,
    )
    product = {**product, "plans": offer["plans"]}
    reviewers = await circulation.reviewers(owner)

    # Alpha: submitted, every track approved, licence offered and accepted, held, lifted, revoked.
    app_a = await circulation.apply(product, alpha)
    app_a = expect(await client.post(f"/v1/applications/{app_a['id']}/submit", headers=alpha["buyer"].headers), 200)
    app_a = await circulation.approve_all(app_a, reviewers)
    lic = expect(await client.get(f"/v1/licences/{app_a['licence_id']}", headers=alpha["buyer"].headers), 200)
    await circulation.accept(lic, alpha)
    for action, body in (("suspend", {"reason": "late report"}), ("reinstate", {"reason": "filed"}),
                         ("revoke", {"reason": "misuse"})):  # fmt: skip
        expect(await client.post(f"/v1/licences/{lic['id']}/{action}", json=body, headers=owner.headers), 200)
    # Beta: submitted, then rejected by the provider.
    app_b = await circulation.apply(product, beta)
    app_b = expect(await client.post(f"/v1/applications/{app_b['id']}/submit", headers=beta["buyer"].headers), 200)
    expect(
        await client.post(
            f"/v1/applications/{app_b['id']}/tracks/provider/decision",
            json={"decision": "reject", "comment": "out of scope"},
            headers=reviewers["provider"].headers,
        ),
        200,
    )
    await dispatcher.run_once()

    alpha_feed, beta_feed = await feed(client, alpha["admin"]), await feed(client, beta["buyer"])
    assert [n["type"] for n in reversed(alpha_feed)] == [
        "application.submitted",
        *["application.track_decided"] * 3,
        "licence.offered",  # issued by the approval, in the same transaction as the decision
        "application.decided",
        "licence.activated",
        "licence.suspended",
        "licence.resumed",
        "licence.revoked",
    ]
    assert [n["type"] for n in reversed(beta_feed)] == [
        "application.submitted",
        "application.track_decided",
        "application.decided",
    ]
    assert beta_feed[0]["data"]["decision"] == "rejected"
    a_ids, b_ids = {app_a["id"], lic["id"]}, {app_b["id"]}
    assert about(alpha_feed) - {product["id"], alpha["admin"].org_id} == a_ids
    assert about(beta_feed) - {product["id"], beta["admin"].org_id} == b_ids
    # The webhooks carry the same events as the feeds, each to its own organisation only.
    for name, own, other in (("alpha", a_ids, b_ids), ("beta", b_ids, a_ids)):
        bodies = [json.loads(r.body) for r in hooks[name].received]
        named = {b["data"]["subject"]["id"] for b in bodies}
        assert named == own and not named & other, name
    # The owner hears of both; the co-provider of the licence it shares in, not of the applications
    # (providers other than the owner do not see applications).
    assert a_ids | b_ids <= about(await feed(client, owner))
    co = [n for n in await feed(client, co_provider) if n["type"] != "product.listed"]  # a party of the product
    assert {n["subject"]["id"] for n in co} == {lic["id"]}
    assert {n["type"] for n in co} == {"licence.offered", "licence.activated", "licence.suspended",
                                       "licence.resumed", "licence.revoked"}  # fmt: skip
    # The operator, who reviews the ethics and compliance tracks, hears of the applications.
    assert a_ids <= about(await feed(client, actors.operator))


async def test_expiry_reminders_30_7_and_1_days_before_the_end_each_once(
    client, circulation, app, receivers, dispatcher
):
    owner = await circulation.provider()
    consumer = await circulation.consumer()
    hook = receivers()
    await register(client, consumer["admin"], hook.url, event_types=["licence.expiring", "licence.expired"])
    lic = (await circulation.licensed(owner, consumer, "L2"))["licence"]
    today = utcnow().date()

    async def ends_in(days: int) -> None:
        async with write_transaction(app.state.sessions) as session:
            await session.execute(
                update(Licence).where(Licence.id == lic["id"]).values(ends_on=today + timedelta(days))
            )

    told = []
    for days, expected in ((40, None), (25, 30), (25, None), (6, 7), (3, None), (1, 1), (0, None)):
        await ends_in(days)
        await sweep(app)
        await sweep(app)  # a second run tells nothing more
        items = [n for n in await feed(client, consumer["buyer"]) if n["type"] == "licence.expiring"]
        if expected is not None:
            told.append(expected)
        assert [n["data"]["reminder"] for n in reversed(items)] == told, (days, items)
    assert items[0]["data"]["days_left"] == 1 and items[0]["data"]["ends_on"] == str(today + timedelta(1))
    await ends_in(-1)
    await sweep(app)
    await sweep(app)
    expired = [n for n in await feed(client, consumer["buyer"]) if n["type"] == "licence.expired"]
    assert len(expired) == 1
    await dispatcher.run_once()
    assert hook.types() == ["licence.expiring"] * 3 + ["licence.expired"]
    # The owner is a party: reminded too.
    assert len([n for n in await feed(client, owner) if n["type"] == "licence.expiring"]) == 3


async def test_a_renewed_licence_is_not_reminded(client, circulation, app):
    owner = await circulation.provider()
    consumer = await circulation.consumer()
    lic = (await circulation.licensed(owner, consumer, "L2"))["licence"]
    expect(await client.post(f"/v1/licences/{lic['id']}/renew", headers=consumer["buyer"].headers), 201)
    async with write_transaction(app.state.sessions) as session:
        await session.execute(
            update(Licence).where(Licence.id == lic["id"]).values(ends_on=utcnow().date() + timedelta(days=5))
        )
    await sweep(app)
    assert not [n for n in await feed(client, consumer["buyer"]) if n["type"] == "licence.expiring"]


async def test_a_new_release_is_told_to_the_licensees_and_not_to_others(client, delivery):
    owner = await delivery.provider()
    product = await delivery.published(owner, "L3")
    holder, outsider = await delivery.consumer(), await delivery.consumer()
    await delivery.licence_on(product, owner, holder)
    await delivery.release(owner, product["id"], "2")
    told = [n for n in await feed(client, holder["buyer"]) if n["type"] == "release.published"]
    assert [n["data"]["version"] for n in told] == ["2"]
    assert told[0]["data"]["product_id"] == product["id"]
    assert not [n for n in await feed(client, outsider["buyer"]) if n["type"] == "release.published"]
    assert [n["data"]["version"] for n in await feed(client, owner) if n["type"] == "release.published"] == ["2", "1"]


async def test_a_suspended_product_is_told_to_its_licensees(client, catalogue, circulation):
    owner = await circulation.provider()
    consumer, outsider = await circulation.consumer(), await circulation.consumer()
    licensed = await circulation.licensed(owner, consumer, "L2")
    curator = await catalogue.curator()
    expect(
        await client.post(
            f"/v1/products/{licensed['product']['id']}/suspend", json={"reason": "audit"}, headers=curator.headers
        ),
        200,
    )
    [told] = [n for n in await feed(client, consumer["buyer"]) if n["type"] == "product.suspended"]
    assert told["data"]["product_id"] == licensed["product"]["id"] and "reason" not in told["data"]  # the owner's
    [own] = [n for n in await feed(client, owner) if n["type"] == "product.suspended"]
    assert own["data"]["reason"] == "audit"
    assert not [n for n in await feed(client, outsider["buyer"]) if n["type"].startswith("product.")]
    assert {n["type"] for n in await feed(client, owner)} >= {"product.listed", "product.suspended"}


async def test_a_cap_at_80_percent_is_told_once(client, delivery):
    owner = await delivery.provider()
    capped = {"name": "Capped", "kind": "free", "currency": "CNY", "caps": {"queries": 5}}
    product = await delivery.published(owner, "L3", plans=[capped])
    consumer = await delivery.consumer()
    lic = await delivery.licence_on(product, owner, consumer)
    body = {"table": "visits", "group_by": ["sex"], "aggregates": [{"fn": "count"}]}
    for n in range(1, 6):
        expect(await delivery.query(lic["id"], consumer["analyst"], body), 200)
        near = [x for x in await feed(client, consumer["buyer"]) if x["type"] == "usage.cap_near"]
        assert len(near) == (1 if n >= 4 else 0), n
    assert near[0]["data"] | {"period_start": None} == {
        "licence_id": lic["id"], "dimension": "queries", "used": 4, "cap": 5, "period_start": None,
    }  # fmt: skip


async def test_an_epsilon_budget_below_20_percent_is_told_once(client, delivery):
    owner = await delivery.provider()
    product = await delivery.published(owner, "L5")
    consumer = await delivery.consumer()
    lic = await delivery.licence_on(product, owner, consumer)
    dp = {"table": "visits", "group_by": ["sex"], "aggregates": [{"fn": "count"}], "epsilon": 0.5}
    for n in range(1, 7):  # the budget is 3: 0.5 left after the fifth (17 %), none after the sixth
        expect(await delivery.query(lic["id"], consumer["analyst"], dp), 200)
        low = [x for x in await feed(client, consumer["buyer"]) if x["type"] == "budget.low"]
        assert len(low) == (1 if n >= 5 else 0), n
    assert low[0]["data"]["epsilon_left"] == 0.5 and low[0]["data"]["epsilon_total"] == 3.0
