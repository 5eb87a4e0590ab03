"""Stall benchmark: how long other writes wait while a checkout waits on a slow Stripe (run by hand;
prints figures, never passes or fails).

    .venv/bin/python bench/stall_bench.py [--rounds 3] [--latency 3]
    LODE_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/lode_stall_bench .venv/bin/python bench/stall_bench.py

Builds, through the API as the tests do, two hospitals sharing a one-time-priced product, a
consumer whose licence awaits payment, and a second consumer with a free licence. Stripe is the
in-process simulator; its ``latency`` setting (seconds before each answer arrives) makes it slow.
The app is ``create_app`` driven in-process by httpx's ASGITransport with its lifespan run, on SQLite
in a temporary file, and — when LODE_BENCH_PG_URL names a scratch database whose name contains
"bench" (its public schema is dropped and migrated afresh) — on PostgreSQL.

Each round, one checkout of the priced licence runs while one writer, in the same process and
event loop, sends writes back to back until the checkout answers: usage events reported for the
licence being paid for (by its hospital), and a consumer's application created then edited
(``POST`` and ``PATCH /v1/applications``). Before each checkout the licence's open session is made
to have run out by our clock, so every checkout asks Stripe twice (close the old session, open a new
one) — the same work every round. Cases:

    no checkout        the same writer with nothing else running (the floor)
    fast Stripe        during a checkout, the simulator answering at once
    slow Stripe        during a checkout, every Stripe answer ``--latency`` seconds late

Figures are write latencies (p50, max) over all rounds of a case, and the checkout's own time.

The script runs unchanged on older commits (for a before/after comparison): where the simulator
has no ``latency`` setting, the bench adds the same delay around its HTTP client's answer.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
from sqlalchemy import update

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import command_line, prepare
from billing.gateway import Gateway
from billing.models import Checkout
from catalog import db
from catalog.app import build_services, create_app
from catalog.worker import Worker
from stripe_simulator import StripeSimulator
from tests.billing.conftest import PLATFORM_SECRET, market
from tests.delivery.conftest import Delivery
from tests.support import Actors, Catalogue, expect, lifespan


def slow_down(sim: StripeSimulator, seconds: float) -> None:
    """Every Stripe answer arrives ``seconds`` late."""
    client = sim.http_client()
    if "latency" in vars(client):
        client.latency = seconds
        return
    # An older simulator without the setting: the same delay, after the answer, around its client.
    answer = type(client).request_async
    client.extra_latency = seconds  # type: ignore[attr-defined]

    async def late(*args: Any, **kwargs: Any) -> Any:
        result = await answer(client, *args, **kwargs)
        await asyncio.sleep(client.extra_latency)  # type: ignore[attr-defined]
        return result

    client.request_async = late  # type: ignore[method-assign]


def summary(samples: list[float]) -> str:
    if not samples:
        return "—"
    return f"p50 {statistics.median(samples) * 1000:8.1f} ms   max {max(samples) * 1000:8.1f} ms   n={len(samples)}"


class Writer:
    """Writes back to back until told to stop; keeps each one's latency."""

    def __init__(self, client: httpx.AsyncClient, setup: Delivery, licence: dict, hospital: Any, other: dict) -> None:
        self.client, self.setup, self.licence, self.hospital, self.other = client, setup, licence, hospital, other
        self.serial = 0

    async def one(self, product: dict) -> list[float]:
        self.serial += 1
        event = {
            "idempotency_key": f"stall-{self.serial}",
            "licence_id": self.licence["id"],
            "dimension": "rows_returned",
            "quantity": 1,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
        took = []
        started = time.perf_counter()
        expect(await self.client.post("/v1/usage-events", json={"events": [event]}, headers=self.hospital.headers), 200)
        took.append(time.perf_counter() - started)
        buyer = self.other["buyer"]
        started = time.perf_counter()
        made = expect(
            await self.client.post(
                "/v1/applications", json=self.setup.application_body(product, self.other), headers=buyer.headers
            ),
            201,
        )
        took.append(time.perf_counter() - started)
        started = time.perf_counter()
        expect(
            await self.client.patch(
                f"/v1/applications/{made['id']}", json={"requested_months": 6}, headers=buyer.headers
            ),
            200,
        )
        took.append(time.perf_counter() - started)
        return took

    async def until(self, done: asyncio.Event, product: dict) -> list[float]:
        samples: list[float] = []
        while not done.is_set():
            samples.extend(await self.one(product))
        return samples


async def run(url: str, rounds: int, latency: float, tmp: Path) -> None:
    settings = await prepare(url, tmp)
    print(f"\n== {'SQLite' if settings.is_sqlite else 'PostgreSQL'}")
    sim = StripeSimulator(webhook_secret=PLATFORM_SECRET)
    gateway = Gateway(sim.client(), (PLATFORM_SECRET,), simulated=True)
    app = create_app(settings, run_worker=False, services=build_services(settings, gateway))
    transport = httpx.ASGITransport(app=app)
    async with lifespan(app), httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as client:
        actors = Actors(client, app, settings)
        await actors.bootstrap()
        setup = Delivery(client, actors, Catalogue(client, actors))
        worker = Worker(app.state.sessions, app.state.registry, app.state.services)

        async def drain() -> None:
            while await worker.run_once(jobs=False):
                pass

        hospital, _, consumer, licence, _ = await market(client, setup, actors, sim, drain)
        product = expect(await client.get(f"/v1/products/{licence['product_id']}", headers=hospital.headers), 200)
        writer = Writer(client, setup, licence, hospital, await setup.consumer())
        path = f"/v1/licences/{licence['id']}/checkout"

        async def checkout_with_writes() -> tuple[list[float], float]:
            async with db.write_transaction(app.state.sessions) as session:  # ran out, by our clock
                await session.execute(update(Checkout).values(expires_at=db.utcnow() - timedelta(seconds=1)))
            done = asyncio.Event()
            writes = asyncio.create_task(writer.until(done, product))
            started = time.perf_counter()
            expect(await client.post(path, json={"method": "card"}, headers=consumer["buyer"].headers), 200)
            took = time.perf_counter() - started
            done.set()
            return await writes, took

        expect(await client.post(path, json={"method": "card"}, headers=consumer["buyer"].headers), 200)  # warm-up
        for _ in range(3):
            await writer.one(product)

        async def alone() -> tuple[list[float], float | None]:
            samples: list[float] = []
            for _ in range(5):
                samples.extend(await writer.one(product))
            return samples, None

        async def fast() -> tuple[list[float], float | None]:
            slow_down(sim, 0.0)
            return await checkout_with_writes()

        async def slow() -> tuple[list[float], float | None]:
            slow_down(sim, latency)
            return await checkout_with_writes()

        cases: dict[str, Callable[[], Awaitable[tuple[list[float], float | None]]]] = {
            "no checkout": alone,
            "fast Stripe": fast,
            f"slow Stripe ({latency:g} s)": slow,
        }
        writes: dict[str, list[float]] = {label: [] for label in cases}
        checkouts: dict[str, list[float]] = {label: [] for label in cases}
        for _ in range(rounds):
            for label, case in cases.items():
                samples, took = await case()
                writes[label].extend(samples)
                if took is not None:
                    checkouts[label].append(took)
        slow_down(sim, 0.0)
        print(f"{'case':<22} {'writes meanwhile':<52} checkout")
        for label in cases:
            took = checkouts[label]
            checkout = f"{statistics.median(took):.2f} s (max {max(took):.2f} s)" if took else "—"
            print(f"{label:<22} {summary(writes[label]):<52} {checkout}")
    sim.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=3.0, help="seconds each slow Stripe answer takes")
    args = parser.parse_args()
    print(command_line(__file__))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {args.rounds} rounds")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(f"sqlite+aiosqlite:///{Path(tmp) / 'lode.db'}", args.rounds, args.latency, Path(tmp)))
    pg = os.environ.get("LODE_BENCH_PG_URL", "").strip()
    if pg:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"(PostgreSQL at {urlparse(pg).hostname})")
            asyncio.run(run(pg, args.rounds, args.latency, Path(tmp)))


if __name__ == "__main__":
    main()
