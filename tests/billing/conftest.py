"""Billing fixtures: the app wired to simulated Stripe, webhooks delivered to it, and a worker."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from billing.gateway import Gateway
from catalog import db, outbox
from catalog.app import build_services, create_app
from catalog.worker import Worker
from stripe_simulator import StripeSimulator
from tests.conftest import make_settings
from tests.delivery.conftest import Delivery
from tests.support import expect

PLATFORM_SECRET = "whsec_simulated_platform"
CONNECT_SECRET = "whsec_simulated_connect"


@pytest.fixture(name="sim")
def fx_sim():
    simulator = StripeSimulator(webhook_secret=PLATFORM_SECRET, connect_webhook_secret=CONNECT_SECRET)
    yield simulator
    simulator.close()


@pytest.fixture(name="settings")
def fx_settings(database: str, tmp_path: Path):
    return make_settings(tmp_path, database, LODE_STRIPE_WEBHOOK_SECRET=f"{PLATFORM_SECRET},{CONNECT_SECRET}")


@pytest.fixture(name="app")
def fx_app(settings, sim):
    gateway = Gateway(sim.client(), settings.stripe_webhook_secrets, simulated=True)
    return create_app(settings, run_worker=False, services=build_services(settings, gateway))


@pytest.fixture(name="hooks")
def fx_hooks(client, sim):
    """Simulated Stripe's webhooks go to our endpoint; each answer is kept for the test to inspect."""
    answers: list[Any] = []

    async def sink(payload: bytes, headers: dict[str, str]) -> None:
        answers.append(await client.post("/v1/webhooks/stripe", content=payload, headers=headers))

    sim.webhook_sink = sink
    return answers


@pytest.fixture(name="drain")
def fx_drain(app):
    """Run the worker until nothing is left, skipping backoff waits (time passes instantly)."""

    async def drain(rounds: int = 20) -> int:
        worker = Worker(app.state.sessions, app.state.registry, app.state.services)
        done = 0
        for _ in range(rounds):
            async with db.write_transaction(app.state.sessions) as session:
                await session.execute(
                    update(outbox.OutboxEvent)
                    .where(outbox.OutboxEvent.status == "pending")
                    .values(available_at=db.utcnow() - timedelta(seconds=1), locked_until=None)
                )
            ran = await worker.run_once(jobs=False)
            done += ran
            if not ran:
                break
        return done

    return drain


@pytest.fixture(name="delivery")
def fx_delivery(client, actors, catalogue) -> Delivery:
    return Delivery(client, actors, catalogue)


ONE_TIME = {
    "name": "Annual research licence",
    "kind": "one_time",
    "currency": "CNY",
    "amount": 3_333_333,
    "term_months": 12,
}
MONTHLY = {"name": "Monthly", "kind": "subscription", "currency": "CNY", "amount": 80_000, "interval": "month"}


async def market(client, delivery, actors, sim, drain, *, plans=None, active_accounts=True):
    """Two hospitals sharing a product 70/30 (15 % operator, 5 % fund), a consumer with a licence
    awaiting payment, and both hospitals' payout accounts (active unless told otherwise)."""
    owner = await delivery.provider()
    partner = await delivery.provider()
    product = await delivery.published(owner, "L2", plans=plans or [ONE_TIME])
    expect(
        await client.put(
            f"/v1/products/{product['id']}/revenue-share",
            json={
                "operator_bps": 1500,
                "fund_bps": 500,
                "providers": [{"org_id": owner.org_id, "weight": 70}, {"org_id": partner.org_id, "weight": 30}],
            },
            headers=owner.headers,
        ),
        201,
    )
    consumer = await delivery.consumer()
    licence = await delivery.licence_on(product, owner, consumer)
    assert licence["status"] == "pending_payment"
    accounts = {}
    for hospital in (owner, partner):
        made = expect(await client.post(f"/v1/orgs/{hospital.org_id}/payout-account", headers=hospital.headers), 200)
        assert made["url"].startswith("https://") and made["simulated"] is True
        accounts[hospital.org_id] = made["account_id"]
        if active_accounts:
            await sim.activate_account(made["account_id"])
    await drain()
    return owner, partner, consumer, licence, accounts


async def checkout(client, consumer, licence) -> dict:
    """The consumer's buyer opens a card checkout for the licence."""
    return expect(
        await client.post(
            f"/v1/licences/{licence['id']}/checkout", json={"method": "card"}, headers=consumer["buyer"].headers
        ),
        200,
    )


async def record_payment_only(app) -> None:
    """Deliver only the events already queued (the webhooks: the payment is recorded, its transfers
    queued but not sent), so a test can act between payment and payout."""
    worker = Worker(app.state.sessions, app.state.registry, app.state.services)
    for event in await outbox.claim(app.state.sessions):
        await worker.deliver(event)


async def pay(client, sim, drain, consumer, licence) -> dict:
    session = await checkout(client, consumer, licence)
    await sim.complete_checkout(session["session_id"])
    await drain()
    return expect(await client.get(f"/v1/payments/{session['payment_id']}", headers=consumer["buyer"].headers), 200)
