"""Billing on simulated Stripe: what Lode runs on outside production when no Stripe key is set.

The composition root (``catalog/app.py``) builds the gateway over ``stripe_simulator``, served
in-process as the tests do, so a demo or a development server can take payments end to end:

* the simulator keeps its state in the data directory (``STATE_FILE``): the Stripe ids the
  database keeps — customers, Connect accounts, checkout sessions — stay valid across restarts
  and between ``lode demo``, ``lode serve`` and its worker processes;
* its webhook signing secret is derived from the key pepper, this data directory's secret, so
  no signing secret is a constant anyone can read here;
* Checkout Sessions point at the simulator's hosted page on this server (``CHECKOUT_PATH``);
  paying there sends the signed events to this app's own ``POST /v1/webhooks/stripe``, the path
  Stripe's webhooks take, so the licence becomes active exactly as with Stripe. Events caused by
  API calls (refunds, transfers …) are sent the same way soon after the call.

``LODE_ENV=production`` never gets here: without a key, priced checkouts answer
``503 billing_not_configured`` and the page is not served.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import httpx
from litestar import Router
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from billing import repository as repo
from billing.gateway import Gateway
from catalog.db import read_transaction
from catalog.settings import Settings
from stripe_simulator import StripeSimulator
from stripe_simulator.hosted import checkout_pages

CHECKOUT_PATH = "/simulator/checkout"
STATE_FILE = "stripe-simulator.sqlite3"
WEBHOOK_PATH = "/v1/webhooks/stripe"


class WebhookRefused(Exception):
    """Our webhook endpoint did not accept a simulated event; the simulator keeps it queued."""


def webhook_secret(settings: Settings) -> str:
    digest = hmac.new(settings.key_pepper, b"lode: simulated Stripe webhook signing secret", hashlib.sha256)
    return f"whsec_{digest.hexdigest()[:40]}"


def build(settings: Settings) -> tuple[StripeSimulator, Gateway]:
    """The simulator over this data directory's state, and the gateway that talks to it."""
    if settings.is_production:
        raise RuntimeError("LODE_ENV=production never runs on simulated Stripe")
    secret = webhook_secret(settings)
    simulator = StripeSimulator(
        webhook_secret=secret,
        state_file=settings.data_dir / STATE_FILE,
        checkout_page=settings.public_url + CHECKOUT_PATH,
    )
    return simulator, Gateway(simulator.client(), (secret,), simulated=True)


def serve(simulator: StripeSimulator, app: Any, settings: Settings) -> None:
    """Send the simulator's webhooks into ``app`` in-process, as soon as Stripe would send them.

    In-process rather than over the network: it works on whatever host and port the app is
    served, and through every middleware and the signature check of the real endpoint.
    """

    async def deliver(payload: bytes, headers: dict[str, str]) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_url) as client:
            answer = await client.post(WEBHOOK_PATH, content=payload, headers=headers)
        if answer.status_code >= 300:  # Stripe, too, counts anything but a 2xx as a failed delivery
            raise WebhookRefused(f"{WEBHOOK_PATH} answered {answer.status_code}: {answer.text[:300]}")

    simulator.webhook_sink = deliver
    simulator.deliver_automatically = True


async def adopt_known_ids(sessions: async_sessionmaker[AsyncSession], simulator: StripeSimulator) -> int:
    """Give the simulator back the customers and Connect accounts the database names but it lacks.

    A data directory made before the simulator kept its state has Stripe ids in the database
    that no simulator remembers; without them every payment of those organisations would fail
    with "No such customer" or "No such account". ``lode demo`` runs this; answers how many.
    """
    async with read_transaction(sessions) as session:
        customers, accounts = await repo.stripe_identities(session)
    adopted = 0
    for customer in customers:
        adopted += simulator.adopt("customer", customer.customer_id, metadata={"lode_org_id": customer.org_id})
    for account in accounts:
        active = account.transfers_active
        adopted += simulator.adopt(
            "account",
            account.account_id,
            type="express",
            metadata={"lode_org_id": account.org_id},
            capabilities={"transfers": "active" if active else "inactive"},
            charges_enabled=active,
            payouts_enabled=active,
            details_submitted=active,
        )
    return adopted


def pages(simulator: StripeSimulator) -> Router:
    """The hosted checkout page: no API key (the buyer's browser has none), not in the API's spec."""
    return checkout_pages(simulator, CHECKOUT_PATH, opt={"public": True}, include_in_schema=False)
