"""Checkout and payout accounts wait on Stripe with no transaction open (billing/checkout.py): a
slow Stripe delays only its own request, and every attempt at a checkout gets the same Stripe
objects. Stripe is simulated (stripe_simulator/); ``latency`` makes each of its answers slow."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from billing.models import Checkout
from catalog import db
from tests.billing.conftest import CONNECT_SECRET, PLATFORM_SECRET, checkout, market
from tests.conftest import make_settings
from tests.support import expect, problem

pytestmark = pytest.mark.asyncio

SLOW_STRIPE_S = 3.0
ORG = {"name": "Meanwhile", "kind": "consumer", "jurisdiction": "CN", "org_type": "pharma", "for_profit": True}


async def timed(request: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    response = await request
    return response, time.perf_counter() - started


async def until_stripe_is_asked(sim, times: int = 1) -> None:
    """Wait until the simulated Stripe has received ``times`` requests (their answers are then on
    their way, ``latency`` late)."""
    for _ in range(1000):
        if len(sim.requests) >= times:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"Stripe was asked {len(sim.requests)} times, not {times}")


async def payments_of(client, consumer, licence) -> list[dict[str, Any]]:
    path = f"/v1/payments?licence_id={licence['id']}"
    return expect(await client.get(path, headers=consumer["buyer"].headers), 200)["items"]


def post_checkout(client, consumer, licence, **body: Any):
    return client.post(
        f"/v1/licences/{licence['id']}/checkout",
        json={"method": "card", **body},
        headers=consumer["buyer"].headers,
    )


async def writes_meanwhile(client, delivery, owner, consumer, licence) -> dict[str, float]:
    """Usage ingest, an application made and edited, at once: how long each took (each succeeded)."""
    product = expect(await client.get(f"/v1/products/{licence['product_id']}", headers=owner.headers), 200)

    async def usage() -> tuple[Any, float]:
        event = {
            "idempotency_key": "meanwhile",
            "licence_id": licence["id"],
            "dimension": "rows_returned",
            "quantity": 5,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        return await timed(client.post("/v1/usage-events", json={"events": [event]}, headers=owner.headers))

    async def application() -> list[tuple[Any, float]]:
        body = delivery.application_body(product, consumer)
        made = await timed(client.post("/v1/applications", json=body, headers=consumer["buyer"].headers))
        path = f"/v1/applications/{made[0].json()['id']}"
        edited = await timed(client.patch(path, json={"requested_months": 6}, headers=consumer["buyer"].headers))
        return [made, edited]

    reported, (made, edited) = await asyncio.gather(usage(), application())
    assert expect(reported[0], 200)["inserted"] == 1
    assert expect(made[0], 201)["status"] == "draft"
    assert expect(edited[0], 200)["requested_months"] == 6
    return {"usage": reported[1], "application": made[1], "edit": edited[1]}


async def while_stripe_is_slow(sim, waiting: Any, client, delivery, owner, consumer, licence) -> Any:
    """Run ``waiting`` (a request or job that calls Stripe) with every Stripe answer 3 s late, and
    ``writes_meanwhile`` while it waits: it takes the 3 s, and none of the writes waits with it (each
    takes well under a second). Returns what ``waiting`` returned."""
    sim.requests.clear()
    sim.http_client().latency = SLOW_STRIPE_S
    task = asyncio.create_task(timed(waiting))
    await until_stripe_is_asked(sim)
    took = await writes_meanwhile(client, delivery, owner, consumer, licence)
    result, waited = await task
    assert waited >= SLOW_STRIPE_S
    assert took == {write: pytest.approx(0, abs=1.0) for write in ("usage", "application", "edit")}
    return result


class TestASlowStripe:
    async def test_writes_during_a_slow_checkout_do_not_wait_on_stripe(
        self, client, delivery, actors, sim, hooks, drain
    ) -> None:
        owner, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        writes = (client, delivery, owner, consumer, licence)
        paid = await while_stripe_is_slow(sim, post_checkout(client, consumer, licence), *writes)
        assert expect(paid, 200)["status"] == "open"

    async def test_writes_during_a_slow_payout_account_link_do_not_wait_on_stripe(
        self, client, delivery, actors, sim, hooks, drain
    ) -> None:
        owner, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        newcomer = await delivery.provider()
        linking = client.post(f"/v1/orgs/{newcomer.org_id}/payout-account", headers=newcomer.headers)
        linked = await while_stripe_is_slow(sim, linking, client, delivery, owner, consumer, licence)
        assert expect(linked, 200)["account_id"].startswith("acct_")

    async def test_writes_during_a_slow_webhook_handler_do_not_wait_on_stripe(
        self, client, delivery, actors, sim, hooks, drain
    ) -> None:
        owner, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        session = await checkout(client, consumer, licence)
        await sim.complete_checkout(session["session_id"])  # the webhook is in the inbox, not yet handled
        # The handler asks Stripe for the charge behind the session.
        await while_stripe_is_slow(sim, drain(), client, delivery, owner, consumer, licence)
        payment = f"/v1/payments/{session['payment_id']}"
        assert expect(await client.get(payment, headers=consumer["buyer"].headers), 200)["status"] == "paid"

    async def test_two_concurrent_checkouts_of_one_licence_share_one_session(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        sim.http_client().latency = 1.0
        first, second = await asyncio.gather(
            post_checkout(client, consumer, licence), post_checkout(client, consumer, licence)
        )
        assert expect(first, 200)["session_id"] == expect(second, 200)["session_id"]
        assert first.json()["payment_id"] == second.json()["payment_id"]
        assert len(sim.objects("checkout.session")) == 1
        async with app.state.sessions() as s:
            assert (await s.execute(select(Checkout.status))).scalars().all() == ["open"]

    async def test_an_answer_slower_than_the_budget_is_503_fast_and_the_retry_gets_the_same_session(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        app.state.services["gateway"].budget_s = 0.5
        sim.http_client().latency = 2.0
        slow, took = await timed(post_checkout(client, consumer, licence))
        problem(slow, 503, "payment_provider_unavailable")
        assert slow.headers["retry-after"] == "5" and took < 2.0
        sim.http_client().latency = 0.0
        retried = expect(await post_checkout(client, consumer, licence), 200)
        sessions = sim.objects("checkout.session")
        assert [s["id"] for s in sessions] == [retried["session_id"]]


class TestRetries:
    async def test_a_retry_after_stripe_made_the_session_reuses_it(
        self, client, delivery, actors, sim, hooks, drain
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        sim.fail_next("POST", "/v1/checkout/sessions", "connection_reset")  # made at Stripe, answer lost
        lost = await post_checkout(client, consumer, licence)
        problem(lost, 503, "payment_provider_unavailable")
        assert len(sim.objects("checkout.session")) == 1
        # The retry sends the request the first attempt recorded, whatever this one's URLs.
        retried = expect(await post_checkout(client, consumer, licence, success_url="https://other.test/ok"), 200)
        sessions = sim.objects("checkout.session")
        assert [s["id"] for s in sessions] == [retried["session_id"]]
        keys = [r.idempotency_key for r in sim.requests if r.path == "/v1/checkout/sessions" and r.method == "POST"]
        assert len(keys) == 2 and keys[0] == keys[1]
        assert lost.headers["retry-after"] == "5"
        await sim.complete_checkout(retried["session_id"])
        await drain()
        active = expect(await client.get(f"/v1/licences/{licence['id']}", headers=consumer["buyer"].headers), 200)
        assert active["status"] == "active"

    async def test_a_refused_checkout_frees_the_licence_for_a_fresh_one(
        self, client, delivery, actors, sim, hooks, drain
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        sim.fail_next("POST", "/v1/checkout/sessions", "card_declined")  # a refusal Stripe keeps under its key
        problem(await post_checkout(client, consumer, licence), 422, "card_declined")
        refused = await payments_of(client, consumer, licence)
        assert [p["status"] for p in refused] == ["failed"]
        fresh = expect(await post_checkout(client, consumer, licence), 200)
        assert fresh["status"] == "open" and fresh["payment_id"] != refused[0]["id"]
        assert [s["id"] for s in sim.objects("checkout.session")] == [fresh["session_id"]]

    async def test_an_invoice_paid_before_its_checkout_recorded_it_is_booked_on_that_checkout(
        self, client, delivery, actors, sim, hooks, drain
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        sim.fail_next("POST", "/v1/invoices/", "connection_reset")  # finalised at Stripe, answer lost
        problem(await post_checkout(client, consumer, licence, method="invoice"), 503, "payment_provider_unavailable")
        await sim.pay_invoice(sim.objects("invoice")[0]["id"])
        await drain()
        payments = await payments_of(client, consumer, licence)
        assert [(p["source"], p["status"]) for p in payments] == [("invoice", "paid")]
        active = expect(await client.get(f"/v1/licences/{licence['id']}", headers=consumer["buyer"].headers), 200)
        assert active["status"] == "active"

    async def test_a_retry_meeting_the_checkout_in_flight_is_409_with_retry_after_then_replayed(
        self, client, delivery, actors, sim, hooks, drain
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        sim.requests.clear()
        sim.http_client().latency = 1.0
        headers = {**consumer["buyer"].headers, "Idempotency-Key": "pay-once"}
        path = f"/v1/licences/{licence['id']}/checkout"
        first = asyncio.create_task(client.post(path, json={"method": "card"}, headers=headers))
        await until_stripe_is_asked(sim)
        busy = await client.post(path, json={"method": "card"}, headers=headers)
        problem(busy, 409, "idempotency_in_progress")
        assert busy.headers["retry-after"] == "1"
        done = expect(await first, 200)
        replay = await client.post(path, json={"method": "card"}, headers=headers)
        assert expect(replay, 200) == done and replay.headers["idempotent-replayed"] == "true"
        assert len(sim.objects("checkout.session")) == 1


class TestPayoutAccounts:
    async def test_a_payout_account_is_kept_once_though_two_links_are_asked_at_once(
        self, client, delivery, actors, sim, hooks, drain
    ) -> None:
        provider = await delivery.provider()
        sim.http_client().latency = 0.5
        path = f"/v1/orgs/{provider.org_id}/payout-account"
        first, second = await asyncio.gather(
            client.post(path, headers=provider.headers), client.post(path, headers=provider.headers)
        )
        assert expect(first, 200)["account_id"] == expect(second, 200)["account_id"]
        assert [a["id"] for a in sim.objects("account")] == [first.json()["account_id"]]


class TestASmallPool:
    @pytest.fixture(name="settings")
    def fx_settings(self, database: str, tmp_path):
        return make_settings(
            tmp_path,
            database,
            LODE_STRIPE_WEBHOOK_SECRET=f"{PLATFORM_SECRET},{CONNECT_SECRET}",
            LODE_DB_MAX_CONNECTIONS="4",
        )

    async def test_forty_checkouts_waiting_on_stripe_leave_connections_for_other_requests(
        self, client, delivery, actors, sim, hooks, drain, app
    ) -> None:
        _, _, consumer, licence, _ = await market(client, delivery, actors, sim, drain)
        await checkout(client, consumer, licence)
        async with db.write_transaction(app.state.sessions) as s:  # ran out by our clock: each closes it first
            await s.execute(update(Checkout).values(expires_at=db.utcnow() - timedelta(seconds=1)))
        sim.requests.clear()
        sim.http_client().latency = SLOW_STRIPE_S
        paying = [asyncio.create_task(post_checkout(client, consumer, licence)) for _ in range(40)]
        await until_stripe_is_asked(sim, times=40)  # all forty are waiting on Stripe now
        other, took = await timed(client.post("/v1/orgs", json=ORG, headers=actors.operator.headers))
        expect(other, 201)
        assert took < 1.0
        answers = await asyncio.gather(*paying)
        assert len({expect(a, 200)["session_id"] for a in answers}) == 1
        assert len([s for s in sim.objects("checkout.session") if s["status"] == "open"]) == 1
