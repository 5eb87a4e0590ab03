"""The Stripe gateway's limits: bounded in time against an unreachable Stripe, and never called
while its task holds a database connection (billing/gateway.py, catalog/db.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from catalog.app import create_app
from catalog.db import ConnectionHeldAcrossNetwork
from tests.billing.conftest import ONE_TIME
from tests.conftest import make_settings
from tests.support import problem

pytestmark = pytest.mark.asyncio


class TestNoStripeUnderAConnection:
    async def test_the_gateway_refuses_while_its_task_holds_a_connection(self, app, sim) -> None:
        gateway = app.state.services["gateway"]
        async with app.state.sessions() as session:
            await session.execute(select(1))
            with pytest.raises(ConnectionHeldAcrossNetwork):
                await gateway.create_customer("org_held", "Held")
        assert list(sim.requests) == []  # Stripe was never asked
        assert (await gateway.create_customer("org_held", "Held")).startswith("cus_")


class Silent:
    """A TCP server that accepts connections and never answers: Stripe unreachable at the
    application level, which only a read timeout ends."""

    def __init__(self) -> None:
        self.connections = 0

    async def answer_never(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.read()  # until the client gives up and closes
        finally:
            writer.close()


@pytest.fixture(name="silent")
async def fx_silent() -> AsyncIterator[tuple[Silent, int]]:
    silent = Silent()
    server = await asyncio.start_server(silent.answer_never, "127.0.0.1", 0)
    try:
        yield silent, server.sockets[0].getsockname()[1]
    finally:
        server.close()


class TestAnUnreachableStripe:
    @pytest.fixture(name="settings")
    def fx_settings(self, database: str, tmp_path, silent):
        _, port = silent
        return make_settings(
            tmp_path,
            database,
            LODE_STRIPE_API_KEY="sk_test_unreachable",
            LODE_STRIPE_API_BASE=f"http://127.0.0.1:{port}",
            LODE_STRIPE_TIMEOUT_S="0.5",
            LODE_STRIPE_MAX_RETRIES="1",
        )

    @pytest.fixture(name="app")
    def fx_app(self, settings):
        return create_app(settings, run_worker=False)  # the gateway as production builds it from settings

    async def test_a_checkout_fails_in_seconds_with_503_and_retry_after(self, client, delivery, silent) -> None:
        owner = await delivery.provider()
        product = await delivery.published(owner, "L2", plans=[ONE_TIME])
        consumer = await delivery.consumer()
        licence = await delivery.licence_on(product, owner, consumer)
        started = time.perf_counter()
        answer = await asyncio.wait_for(
            client.post(
                f"/v1/licences/{licence['id']}/checkout", json={"method": "card"}, headers=consumer["buyer"].headers
            ),
            timeout=30,
        )
        took = time.perf_counter() - started
        problem(answer, 503, "payment_provider_unavailable")
        assert answer.headers["retry-after"] == "5"
        assert took < 5.0, took
        assert silent[0].connections == 2  # one try and LODE_STRIPE_MAX_RETRIES=1 more
