"""The simulator's state kept in a file (stripe_simulator/persistence.py), shared by simulators and
processes — as `lode demo`, `lode serve` and its workers share one data directory.

Stripe is SIMULATED; each simulator here is what one process would hold.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import stripe

from stripe_simulator import StripeSimulator
from tests.stripe_simulator.test_simulator import SECRET, WebhookRecorder, one_time_session


@pytest.fixture(name="file")
def fx_file(tmp_path: Path) -> Path:
    return tmp_path / "stripe-simulator.sqlite3"


@pytest.fixture(name="make")
def fx_make(file: Path):
    made: list[StripeSimulator] = []

    def make(**kw) -> StripeSimulator:
        made.append(StripeSimulator(webhook_secret=SECRET, state_file=file, **kw))
        return made[-1]

    yield make
    for sim in made:
        sim.close()


class TestSharedState:
    async def test_what_one_simulator_made_another_on_the_same_file_finds(self, make):
        first, second = make(), make()
        customer = await first.client().v1.customers.create_async({"name": "Ruijin"})
        session = await first.client().v1.checkout.sessions.create_async(one_time_session(customer.id))
        found = await second.client().v1.checkout.sessions.retrieve_async(session.id, {"expand": ["customer"]})
        assert found.customer.name == "Ruijin" and found.amount_total == 5000

    async def test_a_simulator_made_later_finds_what_a_closed_one_made(self, make):
        earlier = make()
        account = await earlier.client().v1.accounts.create_async(
            {"type": "express", "country": "CN", "capabilities": {"transfers": {"requested": True}}}
        )
        await earlier.activate_account(account.id)
        earlier.close()
        later = make()
        assert later.get("account", account.id)["capabilities"]["transfers"] == "active"

    async def test_an_idempotency_key_replays_across_simulators(self, make):
        first, second = make(), make()
        made = await first.client().v1.customers.create_async({"name": "A"}, {"idempotency_key": "customer:org_1"})
        again = await second.client().v1.customers.create_async({"name": "A"}, {"idempotency_key": "customer:org_1"})
        assert again.id == made.id and again.last_response.headers["Idempotent-Replayed"] == "true"
        with pytest.raises(stripe.IdempotencyError):
            await second.client().v1.customers.create_async({"name": "B"}, {"idempotency_key": "customer:org_1"})
        assert len(second.objects("customer")) == 1

    async def test_events_queued_by_one_are_sent_once_by_another(self, make):
        quiet, sink = make(), WebhookRecorder()  # `lode worker`: no webhook endpoint of its own
        serving = make(webhook_sink=sink)
        customer = await quiet.client().v1.customers.create_async({})
        session = await quiet.client().v1.checkout.sessions.create_async(one_time_session(customer.id))
        await quiet.complete_checkout(session.id)  # no sink: the events stay queued
        await serving.deliver_pending()
        quiet.webhook_sink = late = WebhookRecorder()
        await quiet.deliver_pending()
        assert sink.types().count("checkout.session.completed") == 1 and late.types() == []


REFUNDER = """
import sys, time
from pathlib import Path
from stripe_simulator import StripeSimulator
file, charge, ready, refunds = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
client = StripeSimulator(state_file=file).client()
ready.touch()
while len(list(ready.parent.iterdir())) < 3:  # all start together, so their requests interleave
    time.sleep(0.005)
for _ in range(refunds):
    client.v1.refunds.create({"charge": charge, "amount": 10})
"""


def test_processes_refunding_one_charge_at_once_lose_no_update(file, make):
    """Each process changes the same charge: they must take turns, each seeing the others' refunds."""
    payer = make()
    customer = payer.client().v1.customers.create({})
    session = payer.client().v1.checkout.sessions.create(one_time_session(customer.id))
    asyncio.run(payer.complete_checkout(session.id))
    (charge,) = payer.objects("charge")
    (file.parent / "ready").mkdir()
    refunders = [
        subprocess.Popen(
            [sys.executable, "-c", REFUNDER, str(file), charge["id"], str(file.parent / "ready" / str(n)), "40"],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    for refunder in refunders:
        _, errors = refunder.communicate(timeout=120)
        assert refunder.returncode == 0, errors
    assert payer.get("charge", charge["id"])["amount_refunded"] == 3 * 40 * 10
    assert len(payer.objects("refund")) == 3 * 40
