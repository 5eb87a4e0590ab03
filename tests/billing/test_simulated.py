"""Billing on simulated Stripe as the app composes it (billing/simulated.py): no Stripe key, not
production. Stripe is SIMULATED here — the app builds its own simulator over the data directory,
exactly as `lode serve` does; nothing is injected.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

from billing import simulated
from billing.models import WebhookEvent
from catalog import db
from catalog.app import create_app
from tests.billing.conftest import ONE_TIME
from tests.conftest import make_settings
from tests.support import expect, lifespan, problem

QUESTION = {"table": "visits", "group_by": ["district"], "aggregates": [{"fn": "count"}]}


@pytest.fixture(name="app")
def fx_app(settings):
    """The app as the composition root builds it: its gateway over the built-in simulator."""
    return create_app(settings, run_worker=False)


@pytest.fixture(name="sim")
def fx_sim(app):
    return app.state.services["stripe_simulator"]


async def priced_licence(delivery) -> tuple[dict, dict]:
    owner = await delivery.provider()
    product = await delivery.published(owner, "L2", plans=[ONE_TIME])
    consumer = await delivery.consumer()
    licence = await delivery.licence_on(product, owner, consumer)
    assert licence["status"] == "pending_payment"
    return consumer, licence


async def open_checkout(client, consumer, licence) -> dict:
    return expect(
        await client.post(
            f"/v1/licences/{licence['id']}/checkout", json={"method": "card"}, headers=consumer["buyer"].headers
        ),
        200,
    )


def page_path(checkout: dict) -> str:
    return urlsplit(checkout["url"]).path


class TestPayingOnTheSimulatedPage:
    async def test_a_buyer_pays_on_the_page_and_then_queries_the_licence(self, client, delivery, drain, settings):
        consumer, licence = await priced_licence(delivery)
        checkout = await open_checkout(client, consumer, licence)
        assert checkout["simulated"] is True
        assert checkout["url"].startswith(f"{settings.public_url}/simulator/checkout/cs_test_")
        shown = await client.get(page_path(checkout))
        assert shown.status_code == 200 and shown.headers["content-type"].startswith("text/html")
        assert "Pay — simulated" in shown.text and "CNY 33,333.33" in shown.text
        paid = await client.post(page_path(checkout))
        assert paid.status_code == 303
        assert paid.headers["location"] == f"{settings.public_url}/v1/licences/{licence['id']}?checkout=success"
        await drain()
        buyer = consumer["buyer"].headers
        assert expect(await client.get(f"/v1/licences/{licence['id']}", headers=buyer), 200)["status"] == "active"
        payment = expect(await client.get(f"/v1/payments/{checkout['payment_id']}", headers=buyer), 200)
        assert payment["status"] == "paid" and payment["amount"] == 3_333_333
        answer = expect(await delivery.query(licence["id"], consumer["analyst"], QUESTION), 200)
        assert answer["rows"]

    async def test_the_page_offers_a_way_back_and_loads_nothing_from_elsewhere(self, client, delivery, settings):
        consumer, licence = await priced_licence(delivery)
        checkout = await open_checkout(client, consumer, licence)
        shown = (await client.get(page_path(checkout))).text
        assert f'href="{settings.public_url}/v1/licences/{licence["id"]}?checkout=cancelled"' in shown
        assert "<script" not in shown and "<link" not in shown and "src=" not in shown

    async def test_a_second_press_of_pay_pays_once(self, client, delivery, drain, sim):
        consumer, licence = await priced_licence(delivery)
        checkout = await open_checkout(client, consumer, licence)
        for _ in range(2):
            assert (await client.post(page_path(checkout))).status_code == 303
        await drain()
        assert len(sim.objects("payment_intent")) == 1
        listed = expect(
            await client.get(f"/v1/payments?licence_id={licence['id']}", headers=consumer["buyer"].headers), 200
        )
        assert [p["status"] for p in listed["items"]] == ["paid"]

    async def test_an_unknown_session_is_a_404_page(self, client):
        answer = await client.get("/simulator/checkout/cs_test_nobody")
        assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")


class TestWebhooksFromThePage:
    async def test_a_webhook_the_endpoint_refuses_stays_queued_and_arrives_later(
        self, client, delivery, drain, app, sim
    ):
        """The page's events go through the signature check of POST /v1/webhooks/stripe."""
        consumer, licence = await priced_licence(delivery)
        checkout = await open_checkout(client, consumer, licence)
        gateway = app.state.services["gateway"]
        secrets = gateway.webhook_secrets
        gateway.webhook_secrets = ("whsec_not_the_simulators",)  # the endpoint now refuses its signatures
        assert (await client.post(page_path(checkout))).status_code == 303  # paid all the same, as on Stripe
        await drain()
        buyer = consumer["buyer"].headers
        status = expect(await client.get(f"/v1/licences/{licence['id']}", headers=buyer), 200)["status"]
        assert status == "pending_payment" and sim.state.undelivered
        gateway.webhook_secrets = secrets
        await sim.deliver_pending()
        await drain()
        assert expect(await client.get(f"/v1/licences/{licence['id']}", headers=buyer), 200)["status"] == "active"
        async with db.read_transaction(app.state.sessions) as session:  # every event arrived, the refused one too
            assert all([await session.get(WebhookEvent, event["id"]) for event in sim.events])

    async def test_the_signing_secret_is_this_data_directorys_not_a_constant(self, client, sim, tmp_path, database):
        other = make_settings(tmp_path / "other", database, LODE_KEY_PEPPER="another-pepper-" + "y" * 40)
        assert sim.webhook_secret == simulated.webhook_secret(make_settings(tmp_path, database))
        assert sim.webhook_secret != simulated.webhook_secret(other)
        payload = b'{"id": "evt_1", "object": "event", "type": "ping"}'
        forged = {"Stripe-Signature": sim.sign(payload, secret="whsec_simulated")}  # the simulator's default
        problem(await client.post("/v1/webhooks/stripe", content=payload, headers=forged), 400, "invalid_signature")


class TestStateAcrossProcesses:
    async def test_a_second_app_on_the_same_data_directory_knows_the_stripe_objects_of_the_first(
        self, client, delivery, settings
    ):
        """`lode demo`, then `lode serve`: the database keeps Stripe's ids, and so does the simulator."""
        owner = await delivery.provider()
        first = expect(await client.post(f"/v1/orgs/{owner.org_id}/payout-account", headers=owner.headers), 200)
        later = create_app(settings, run_worker=False)  # another process over the same data directory
        async with (
            lifespan(later),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=later), base_url="http://testserver") as again,
        ):
            second = expect(await again.post(f"/v1/orgs/{owner.org_id}/payout-account", headers=owner.headers), 200)
        assert second["account_id"] == first["account_id"]

    async def test_a_data_directory_without_simulator_state_gets_the_databases_stripe_ids_back(
        self, client, delivery, drain, sim, tmp_path, database
    ):
        """Data from before the simulator kept its state: `lode demo` adopts the ids the database names."""
        owner = await delivery.provider()
        account = expect(await client.post(f"/v1/orgs/{owner.org_id}/payout-account", headers=owner.headers), 200)
        await sim.activate_account(account["account_id"])
        consumer, licence = await priced_licence(delivery)
        await open_checkout(client, consumer, licence)  # makes the consumer a Stripe customer
        await drain()
        forgetful = make_settings(tmp_path / "older", database)  # the same database, no simulator state
        later = create_app(forgetful, run_worker=False)
        async with (
            lifespan(later),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=later), base_url="http://testserver") as again,
        ):
            path = f"/v1/orgs/{owner.org_id}/payout-account"
            assert await simulated.adopt_known_ids(later.state.sessions, later.state.services["stripe_simulator"]) == 2
            assert expect(await again.post(path, headers=owner.headers), 200)["account_id"] == account["account_id"]
        forgotten = later.state.services["stripe_simulator"]
        assert forgotten.get("account", account["account_id"])["capabilities"]["transfers"] == "active"
        (customer,) = sim.objects("customer")
        assert forgotten.get("customer", customer["id"])["metadata"] == {"lode_org_id": consumer["buyer"].org_id}


class TestProduction:
    @pytest.fixture(name="settings")
    def fx_settings(self, database, tmp_path):
        return make_settings(tmp_path, database, LODE_ENV="production")

    async def test_production_without_a_key_takes_no_payment_and_serves_no_page(self, client, delivery, app):
        assert "stripe_simulator" not in app.state.services
        consumer, licence = await priced_licence(delivery)
        problem(
            await client.post(f"/v1/licences/{licence['id']}/checkout", json={}, headers=consumer["buyer"].headers),
            503,
            "billing_not_configured",
        )
        problem(await client.get("/simulator/checkout/cs_test_anything"), 404, "not_found")
