"""The simulator's state kept in a file (stripe_simulator/persistence.py), shared by simulators and
processes — as `lode demo`, `lode serve` and its workers share one data directory.

Stripe is SIMULATED; each simulator here is what one process would hold.
"""

from __future__ import annotations

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


WRITER = """
import sys
from stripe_simulator import StripeSimulator
sim = StripeSimulator(state_file=sys.argv[1])
for i in range(int(sys.argv[3])):
    sim.client().v1.customers.create({"name": f"{sys.argv[2]}-{i}"})
sim.close()
"""


def test_processes_writing_at_once_lose_nothing(file, make):
    """Each request reloads, changes and saves the whole state: one process at a time, or updates are lost."""
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(file), name, "25"], stderr=subprocess.PIPE, text=True)
        for name in ("a", "b", "c")
    ]
    for writer in writers:
        _, errors = writer.communicate(timeout=120)
        assert writer.returncode == 0, errors
    names = sorted(c["name"] for c in make().objects("customer"))
    assert names == sorted(f"{w}-{i}" for w in "abc" for i in range(25))
