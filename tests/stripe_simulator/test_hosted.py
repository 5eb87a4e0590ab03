"""The simulator's hosted Checkout page (stripe_simulator/hosted.py), mounted in a bare Litestar app.

Stripe is SIMULATED: the page stands in for checkout.stripe.com. Sessions are made with the
real SDK; the page is driven over ASGI as a browser would.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import stripe
from litestar import Litestar

from stripe_simulator import StripeSimulator
from stripe_simulator.hosted import checkout_pages, money
from tests.stripe_simulator.test_simulator import SECRET, WebhookRecorder, metered_price, one_time_session

BASE = "http://shop.test"


@pytest.fixture(name="sink")
def fx_sink() -> WebhookRecorder:
    return WebhookRecorder()


@pytest.fixture(name="sim")
def fx_sim(sink: WebhookRecorder):
    sim = StripeSimulator(webhook_secret=SECRET, webhook_sink=sink, checkout_page=f"{BASE}/pay/", seed=11)
    yield sim
    sim.close()


@pytest.fixture(name="browser")
async def fx_browser(sim: StripeSimulator):
    app = Litestar([checkout_pages(sim, "/pay")])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as browser:
        yield browser


async def open_session(sim: StripeSimulator, **changes) -> stripe.checkout.Session:
    client = sim.client()
    customer = await client.v1.customers.create_async({"name": "Buyer"})
    return await client.v1.checkout.sessions.create_async({**one_time_session(customer.id), **changes})


class TestThePage:
    async def test_a_session_points_at_the_page_which_shows_its_lines_and_total(self, sim, browser):
        session = await open_session(sim)
        assert session.url == f"{BASE}/pay/{session.id}"
        shown = await browser.get(session.url)
        assert shown.status_code == 200 and shown.headers["content-type"].startswith("text/html")
        assert "Annual research licence" in shown.text and shown.text.count("CNY 50.00") == 2  # line and total
        assert '<form method="post">' in shown.text and "Pay — simulated" in shown.text
        assert 'href="https://lode.test/cancel"' in shown.text

    async def test_a_subscription_shows_its_interval_and_a_metered_line_its_usage(self, sim, browser):
        client = sim.client()
        rows = await metered_price(client, "eur")
        customer = await client.v1.customers.create_async({})
        monthly = {"currency": "eur", "unit_amount": 90000, "product_data": {"name": "Monthly"}}
        session = await client.v1.checkout.sessions.create_async(
            {
                "mode": "subscription",
                "customer": customer.id,
                "line_items": [
                    {"price_data": {**monthly, "recurring": {"interval": "month"}}, "quantity": 1},
                    {"price": rows.id},
                ],
            }
        )
        shown = (await browser.get(session.url)).text
        assert "EUR 900.00 every month" in shown and "by usage, every month" in shown

    async def test_an_unknown_session_is_a_404_page(self, browser):
        answer = await browser.get("/pay/cs_test_nobody")
        assert answer.status_code == 404 and "does not exist" in answer.text


class TestPaying:
    async def test_pay_completes_the_session_sends_signed_events_and_redirects_to_success(self, sim, sink, browser):
        session = await open_session(sim)
        answer = await browser.post(session.url)
        assert answer.status_code == 303 and answer.headers["location"] == "https://lode.test/ok"
        assert sim.get("checkout.session", session.id)["status"] == "complete"
        payload, headers = sink.last("checkout.session.completed")
        event = stripe.Webhook.construct_event(payload, headers["Stripe-Signature"], SECRET)
        assert event.data.object.id == session.id and event.data.object.payment_status == "paid"

    async def test_paying_again_charges_nothing_more(self, sim, sink, browser):
        session = await open_session(sim)
        await browser.post(session.url)
        again = await browser.post(session.url)
        assert again.status_code == 303 and again.headers["location"] == "https://lode.test/ok"
        assert len(sim.objects("charge")) == 1 and sink.types().count("checkout.session.completed") == 1

    async def test_an_expired_session_is_gone_and_cannot_be_paid(self, sim, sink, browser):
        session = await open_session(sim)
        await sim.client().v1.checkout.sessions.expire_async(session.id)
        for answer in (await browser.get(f"/pay/{session.id}"), await browser.post(f"/pay/{session.id}")):
            assert answer.status_code == 410 and 'href="https://lode.test/cancel"' in answer.text
        assert sim.objects("charge") == [] and "checkout.session.completed" not in sink.types()


class TestDeliveringAutomatically:
    async def test_an_api_calls_events_reach_the_sink_without_being_asked_for(self, sim, sink):
        session = await open_session(sim)
        await sim.complete_checkout(session.id)
        sim.deliver_automatically = True
        charge = sim.objects("charge")[0]
        await sim.client().v1.refunds.create_async({"charge": charge["id"]})
        for _ in range(100):  # the events go out just after the call is answered
            if "charge.refunded" in sink.types():
                break
            await asyncio.sleep(0.01)
        refunded = json.loads(sink.last("charge.refunded")[0])
        assert refunded["data"]["object"]["id"] == charge["id"] and sim.state.undelivered == []


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [(3_333_333, "cny", "CNY 33,333.33"), (1200, "jpy", "JPY 1,200"), (1500, "kwd", "KWD 1.500")],
)
def test_amounts_are_shown_in_the_currencys_own_units(amount, currency, shown):
    assert money(amount, currency) == shown
