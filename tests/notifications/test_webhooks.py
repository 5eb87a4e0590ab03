"""Webhook deliveries: signed per Standard Webhooks, retried with the same id, never blocked by a
slow receiver, never lost with a killed worker, disabled after three days of failure."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from standardwebhooks import Webhook, WebhookVerificationError

from catalog.db import utcnow, write_transaction
from catalog.notifications.dispatcher import Dispatcher
from catalog.notifications.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.notifications.conftest import register
from tests.support import expect, problem


async def test_a_delivery_is_signed_and_verifies_with_standardwebhooks(
    client, actors, catalogue, receivers, dispatcher
):
    provider = await actors.org("provider")
    receiver = receivers()
    endpoint = await register(client, provider, receiver.url)
    assert endpoint["secret"].startswith("whsec_")
    listed = await catalogue.listed(provider)

    assert await dispatcher.run_once() == 1
    [got] = receiver.received
    payload = Webhook(endpoint["secret"]).verify(got.body, got.headers)
    assert payload["type"] == "product.listed"
    assert payload["id"] == got.headers["webhook-id"]
    assert payload["data"]["subject"] == {"type": "product", "id": listed["id"]}
    assert payload["data"]["product_id"] == listed["id"]
    with pytest.raises(WebhookVerificationError):  # a forged body does not verify
        Webhook(endpoint["secret"]).verify(got.body.replace(b"listed", b"LISTED"), got.headers)
    with pytest.raises(WebhookVerificationError):  # nor does another endpoint's secret
        Webhook((await register(client, provider, receiver.url))["secret"]).verify(got.body, got.headers)

    # The secret is shown once: never again in a read.
    read = expect(
        await client.get(f"/v1/orgs/{provider.org_id}/webhooks/{endpoint['id']}", headers=provider.headers), 200
    )
    assert "secret" not in read
    log = expect(
        await client.get(f"/v1/orgs/{provider.org_id}/webhooks/{endpoint['id']}/deliveries", headers=provider.headers),
        200,
    )
    [delivery] = log["items"]
    assert delivery["status"] == "delivered" and delivery["event_id"] == got.headers["webhook-id"]
    assert [t["status_code"] for t in delivery["tries"]] == [204]
    # Deleting the endpoint takes its delivery log with it.
    expect(await client.delete(f"/v1/orgs/{provider.org_id}/webhooks/{endpoint['id']}", headers=provider.headers), 204)
    async with write_transaction(dispatcher.sessions) as session:
        left = await session.execute(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint["id"]))
        assert left.scalars().all() == []


async def test_a_receiver_that_fails_four_times_gets_the_event_with_the_same_id(
    client, actors, catalogue, receivers, dispatcher
):
    provider = await actors.org("provider")
    receiver = receivers(lambda n: (500, 0) if n <= 4 else (200, 0))
    endpoint = await register(client, provider, receiver.url)
    await catalogue.listed(provider)

    later = utcnow()
    waits = []
    for _ in range(5):
        dispatcher.clock = lambda at=later: at
        assert await dispatcher.run_once() == 1
        assert await dispatcher.run_once() == 0  # not due again before its backoff
        async with write_transaction(dispatcher.sessions) as session:
            row = (await session.execute(select(WebhookDelivery))).scalar_one()
            if row.status == "pending":
                waits.append(row.next_attempt_at - later)
                later = row.next_attempt_at
    assert len(receiver.received) == 5
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    for got in receiver.received:  # every try signed afresh, each verifies
        Webhook(endpoint["secret"]).verify(got.body, got.headers)
    assert all(b > a for a, b in itertools.pairwise(waits)), waits  # backing off exponentially
    assert waits[0] >= timedelta(seconds=4)
    log = expect(
        await client.get(f"/v1/orgs/{provider.org_id}/webhooks/{endpoint['id']}/deliveries", headers=provider.headers),
        200,
    )
    assert [t["status_code"] for t in log["items"][0]["tries"]] == [500, 500, 500, 500, 200]
    assert log["items"][0]["status"] == "delivered"


async def test_a_slow_receiver_does_not_delay_another_organisations_deliveries(
    client, actors, catalogue, receivers, app
):
    slow_org, quick_org = await actors.org("provider"), await actors.org("provider")
    slow = receivers(lambda n: (200, 3.0))  # past the 1 s timeout
    quick = receivers()
    await register(client, slow_org, slow.url)
    await register(client, quick_org, quick.url)
    await catalogue.listed(slow_org)  # the slow one's event is due first
    await asyncio.sleep(0.01)
    await catalogue.listed(quick_org)

    dispatcher = Dispatcher(app.state.sessions, pepper=app.state.settings.key_pepper, timeout_s=2.0, allow_private=True)
    running = asyncio.create_task(dispatcher.run())

    async def statuses() -> dict[str, str]:
        async with write_transaction(app.state.sessions) as session:
            rows = await session.execute(
                select(WebhookEndpoint.org_id, WebhookDelivery.status).join(
                    WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id
                )
            )
            return dict(rows.all())

    try:
        seen = await statuses()
        for _ in range(150):  # 1.5 s: less than the slow receiver's try may take
            if seen[quick_org.org_id] == "delivered":
                break
            await asyncio.sleep(0.01)
            seen = await statuses()
        # The quick receiver's event was delivered (and recorded) while the slow receiver still held
        # its request open: no try of the slow one had ended yet.
        assert seen == {quick_org.org_id: "delivered", slow_org.org_id: "pending"}
        assert slow.received and not await _tries(app, slow_org.org_id)
    finally:
        dispatcher.stop()
        await running
    assert [t.error for t in await _tries(app, slow_org.org_id)] == ["timed out after 2 s"]


async def _tries(app, org_id: str) -> list[WebhookAttempt]:
    async with write_transaction(app.state.sessions) as session:
        stmt = (
            select(WebhookAttempt)
            .join(WebhookDelivery, WebhookDelivery.id == WebhookAttempt.delivery_id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookEndpoint.org_id == org_id)
        )
        return list((await session.execute(stmt)).scalars())


async def test_a_killed_worker_loses_no_delivery(client, actors, catalogue, receivers, app, dispatcher):
    provider = await actors.org("provider")
    receiver = receivers(lambda n: (200, 2.0) if n == 1 else (200, 0))
    endpoint = await register(client, provider, receiver.url)
    await catalogue.listed(provider)

    doomed = Dispatcher(app.state.sessions, pepper=app.state.settings.key_pepper, timeout_s=5.0, allow_private=True)
    killed = asyncio.create_task(doomed.run())
    await asyncio.to_thread(receiver.arrived.wait, 10)
    killed.cancel()  # mid-request: nothing recorded, the claim stays until its lease lapses
    with pytest.raises(asyncio.CancelledError):
        await killed
    assert await dispatcher.run_once() == 0  # still leased to the dead worker

    dispatcher.clock = lambda: utcnow() + doomed.lease + timedelta(seconds=1)
    assert await dispatcher.run_once() == 1
    assert len(receiver.received) == 2
    assert receiver.received[0].headers["webhook-id"] == receiver.received[1].headers["webhook-id"]
    log = expect(
        await client.get(f"/v1/orgs/{provider.org_id}/webhooks/{endpoint['id']}/deliveries", headers=provider.headers),
        200,
    )
    assert log["items"][0]["status"] == "delivered"


async def test_an_endpoint_failing_for_three_days_is_disabled_and_its_org_told(
    client, actors, catalogue, receivers, dispatcher
):
    provider = await actors.org("provider")
    dead = receivers(lambda n: (503, 0))
    other = receivers()
    endpoint = await register(client, provider, dead.url)
    await register(client, provider, other.url, event_types=["webhook.disabled"])
    await catalogue.listed(provider)

    at = utcnow()
    for _ in range(40):
        dispatcher.clock = lambda at=at: at
        await dispatcher.run_once()
        async with write_transaction(dispatcher.sessions) as session:
            row = (
                await session.execute(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint["id"]))
            ).scalar_one()
        if row.status != "pending":
            break
        at = row.next_attempt_at
    assert row.status == "failed"
    assert at - row.first_attempt_at >= timedelta(days=3)
    read = expect(
        await client.get(f"/v1/orgs/{provider.org_id}/webhooks/{endpoint['id']}", headers=provider.headers), 200
    )
    assert read["enabled"] is False and "three days" in read["disabled_reason"]
    # Told in the feed and at its other endpoint; the dead one is not called about itself.
    feed = expect(await client.get("/v1/notifications?type=webhook.disabled", headers=provider.headers), 200)
    assert [n["data"]["endpoint_id"] for n in feed["items"]] == [endpoint["id"]]
    await dispatcher.run_once()
    assert other.types() == ["webhook.disabled"]
    assert "webhook.disabled" not in dead.types()

    # Nothing more goes to a disabled endpoint, not even a delivery still pending from before it...
    async with write_transaction(dispatcher.sessions) as session:
        await session.execute(update(WebhookDelivery).where(WebhookDelivery.id == row.id).values(status="pending"))
    tries = len(dead.received)
    await dispatcher.run_once()
    assert len(dead.received) == tries
    # ...and re-enabled it starts afresh: one more failure does not disable it again at once.
    expect(
        await client.patch(
            f"/v1/orgs/{provider.org_id}/webhooks/{endpoint['id']}", json={"enabled": True}, headers=provider.headers
        ),
        200,
    )
    dispatcher.clock = utcnow
    await dispatcher.run_once()
    assert len(dead.received) == tries + 1
    read = expect(
        await client.get(f"/v1/orgs/{provider.org_id}/webhooks/{endpoint['id']}", headers=provider.headers), 200
    )
    assert read["enabled"] is True
    dead.behaviour = lambda n: (200, 0)
    await catalogue.listed(provider)
    expect(
        await client.post(
            f"/v1/orgs/{provider.org_id}/webhooks/{endpoint['id']}/deliveries/{row.id}/redeliver",
            headers=provider.headers,
        ),
        202,
    )
    dispatcher.clock = utcnow
    await dispatcher.run_once()
    # The delivery redelivered at once, and the event told after the endpoint was enabled again.
    assert len(dead.received) == tries + 3 and dead.types()[-2:] == ["product.listed"] * 2
    log = expect(
        await client.get(
            f"/v1/orgs/{provider.org_id}/webhooks/{endpoint['id']}/deliveries?status=failed", headers=provider.headers
        ),
        200,
    )
    assert log["items"] == []


async def test_a_rotated_secret_signs_beside_the_new_one_for_a_day(client, actors, catalogue, receivers, dispatcher):
    provider = await actors.org("provider")
    receiver = receivers()
    endpoint = await register(client, provider, receiver.url)
    rotated = expect(
        await client.post(
            f"/v1/orgs/{provider.org_id}/webhooks/{endpoint['id']}/rotate-secret", headers=provider.headers
        ),
        200,
    )
    assert rotated["secret"] != endpoint["secret"] and rotated["previous_secret_expires_at"]
    await catalogue.listed(provider)
    await dispatcher.run_once()
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(endpoint["secret"]).verify(got.body, got.headers)
    Webhook(rotated["secret"]).verify(got.body, got.headers)

    async with write_transaction(dispatcher.sessions) as session:  # a day later the old one is gone
        await session.execute(update(WebhookDelivery).values(status="pending", next_attempt_at=utcnow()))
    dispatcher.clock = lambda: utcnow() + timedelta(hours=24, minutes=1)
    await dispatcher.run_once()
    got = receiver.received[-1]
    Webhook(rotated["secret"]).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["secret"]).verify(got.body, got.headers)


async def test_only_subscribed_types_reach_an_endpoint(client, actors, catalogue, circulation, receivers, dispatcher):
    provider = await actors.org("provider")
    listing_only = receivers()
    suspended_only = receivers()
    off = receivers()
    await register(client, provider, listing_only.url, event_types=["product.listed"])
    await register(client, provider, suspended_only.url, event_types=["product.suspended"])
    await register(client, provider, off.url, enabled=False)
    product = await catalogue.listed(provider)
    curator = await catalogue.curator()
    expect(
        await client.post(
            f"/v1/products/{product['id']}/suspend", json={"reason": "a complaint"}, headers=curator.headers
        ),
        200,
    )
    await dispatcher.run_once()
    assert listing_only.types() == ["product.listed"]
    assert suspended_only.types() == ["product.suspended"]
    assert json.loads(suspended_only.received[0].body)["data"]["reason"] == "a complaint"
    assert off.received == []


async def test_webhook_endpoints_are_their_org_admins(client, actors, receivers):
    provider = await actors.org("provider")
    stranger = await actors.org("consumer")
    reviewer = await actors.member(provider.org_id, ["reviewer"])
    url = receivers().url
    endpoint = await register(client, provider, url)
    path = f"/v1/orgs/{provider.org_id}/webhooks"
    problem(await client.post(path, json={"url": url}, headers=reviewer.headers), 403, "forbidden")
    problem(await client.get(path, headers=stranger.headers), 404, "not_found")
    problem(await client.get(f"{path}/{endpoint['id']}", headers=stranger.headers), 404, "not_found")
    problem(
        await client.get(f"/v1/orgs/{stranger.org_id}/webhooks/{endpoint['id']}", headers=stranger.headers),
        404,
        "not_found",
    )
    bad = problem(
        await client.post(path, json={"url": url, "event_types": ["x.y"]}, headers=provider.headers),
        400,
        "validation_error",
    )
    assert bad["errors"][0]["field"].startswith("event_types")
    changed = expect(
        await client.patch(
            f"{path}/{endpoint['id']}",
            json={"event_types": ["licence.expiring"], "description": "ops"},
            headers=provider.headers,
        ),
        200,
    )
    assert changed["event_types"] == ["licence.expiring"] and changed["description"] == "ops"
    for _ in range(9):
        await register(client, provider, url)
    problem(await client.post(path, json={"url": url}, headers=provider.headers), 409, "webhook_limit")
    listed = expect(await client.get(f"{path}?limit=4", headers=provider.headers), 200)
    assert len(listed["items"]) == 4 and listed["next_cursor"]
    expect(await client.delete(f"{path}/{endpoint['id']}", headers=provider.headers), 204)
    problem(await client.get(f"{path}/{endpoint['id']}", headers=provider.headers), 404, "not_found")
    audit = expect(await client.get("/v1/audit?limit=50", headers=provider.headers), 200)
    assert {"webhook.created", "webhook.updated", "webhook.deleted"} <= {e["action"] for e in audit["items"]}


async def test_a_long_backlog_at_one_endpoint_does_not_hide_another_endpoints_delivery(
    client, actors, receivers, app, dispatcher
):
    from catalog.notifications import deliveries, events

    backlogged, other = await actors.org("provider"), await actors.org("provider")
    busy = await register(client, backlogged, receivers().url)
    free = await register(client, other, receivers().url)
    async with write_transaction(app.state.sessions) as session:
        for n in range(250):
            await events.publish(session, "product.listed", ("product", f"prd_{n}"), [backlogged.org_id], {})
        await events.publish(session, "product.listed", ("product", "prd_other"), [other.org_id], {})
    settings = app.state.settings

    async def claim(busy_ids: list[str], limit: int = 10) -> list[str]:
        claimed = await deliveries.claim(
            app.state.sessions,
            limit=limit,
            busy=busy_ids,
            lease=timedelta(seconds=30),
            at=utcnow(),
            pepper=settings.key_pepper,
        )
        return [c.endpoint_id for c in claimed]

    # The backlogged endpoint is being called: the other's delivery is still found.
    assert await claim([busy["id"]]) == [free["id"]]
    # With neither busy: one delivery of each endpoint, never two to one.
    async with write_transaction(app.state.sessions) as session:
        await session.execute(update(WebhookDelivery).values(locked_until=None, lock_token=None))
    assert sorted(await claim([])) == sorted([busy["id"], free["id"]])
