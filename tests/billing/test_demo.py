"""`lode demo` on simulated Stripe (billing/demo.py, catalog/app.py's seed_demo): a buyer finishes the
demo on the simulated checkout page, and rerunning the demo after what a user did changes nothing.

Stripe is SIMULATED, kept in the data directory as `lode demo` and `lode serve` keep it; each app
below is what one `lode serve` would run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx

from catalog.app import create_app, seed_demo
from catalog.worker import Worker
from tests.support import expect, lifespan

QUESTION = {"table": "responses", "group_by": ["smoking_status"], "aggregates": [{"fn": "count"}]}


@asynccontextmanager
async def served(settings) -> AsyncIterator[tuple[httpx.AsyncClient, Worker]]:
    app = create_app(settings, run_worker=False)
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=settings.public_url) as client,
    ):
        yield client, Worker(app.state.sessions, app.state.registry, app.state.services)


async def test_a_buyer_pays_the_demo_on_the_page_and_reruns_of_the_demo_change_nothing(settings):
    first = await seed_demo(settings, progress=False)
    (left,) = [made for made in first["licences"] if made["status"] == "pending_payment"]
    buyer = {"Authorization": f"Bearer {first['keys'][left['consumer']]}"}
    operator = {"Authorization": f"Bearer {first['keys']['operator']}"}
    licence = f"/v1/licences/{left['licence_id']}"
    async with served(settings) as (client, _):
        new_org = {"name": "Fresh Biotech", "kind": "consumer", "jurisdiction": "CN", "org_type": "pharma"}
        expect(await client.post("/v1/orgs", json={**new_org, "for_profit": True}, headers=operator), 201)
        checkout = expect(await client.post(f"{licence}/checkout", json={"method": "card"}, headers=buyer), 200)

    again = await seed_demo(settings, progress=False)  # with the buyer's checkout open and a new organisation
    assert again["keys"] == first["keys"] and again["payments"] == []  # nothing paid on the buyer's behalf

    async with served(settings) as (client, worker):
        assert expect(await client.get(licence, headers=buyer), 200)["status"] == "pending_payment"
        page = urlsplit(checkout["url"]).path
        assert "Pay — simulated" in (await client.get(page)).text
        paid = await client.post(page)
        assert paid.status_code == 303 and paid.headers["location"].endswith(f"{licence}?checkout=success")
        while await worker.run_once(jobs=False):
            pass
        assert expect(await client.get(licence, headers=buyer), 200)["status"] == "active"
        assert expect(await client.post(f"{licence}/query", json=QUESTION, headers=buyer), 200)["rows"]

    third = await seed_demo(settings, progress=False)
    assert third["keys"] == first["keys"] and third["payments"] == []
    assert {made["status"] for made in third["licences"]} == {"active"}
