"""What keeping the simulated Stripe's state in a file costs a request (run by hand; prints figures,
never passes or fails).

    .venv/bin/python bench/simulator_bench.py [--requests 200] [--history 0,100,400]

Each request is ``customers.create_async`` through the real SDK, once on a simulator held in memory
(the tests) and once on one whose state is in a file (``lode demo`` and ``lode serve``): there every
request is a SQLite write transaction on the file that writes the objects the request changed. The
state grows with use, so both are measured after ``history`` paid checkouts (each leaves a customer,
a session, a payment intent, a charge, a balance transaction and three events behind); what a request
costs should not grow with it.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

from stripe_simulator import StripeSimulator

SESSION = {
    "mode": "payment",
    "success_url": "http://127.0.0.1:8000/ok",
    "line_items": [
        {"quantity": 1, "price_data": {"currency": "cny", "unit_amount": 1200000, "product_data": {"name": "Licence"}}}
    ],
}


async def history(sim: StripeSimulator, checkouts: int) -> None:
    client = sim.client()
    for _ in range(checkouts):
        customer = await client.v1.customers.create_async({"name": "Buyer"})
        session = await client.v1.checkout.sessions.create_async({**SESSION, "customer": customer.id})
        await sim.complete_checkout(session.id)


async def per_request_ms(sim: StripeSimulator, requests: int) -> list[float]:
    client, times = sim.client(), []
    for _ in range(requests):
        start = time.perf_counter()
        await client.v1.customers.create_async({"name": "Ruijin"})
        times.append((time.perf_counter() - start) * 1000)
    return times


def size_on_disk(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.iterdir())  # the state file and its write-ahead log


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--history", default="0,100,400", help="paid checkouts made before measuring")
    args = parser.parse_args()
    print("reproduce:", shlex.join([".venv/bin/python", *sys.argv]))
    print(f"{'state':>8} {'history':>8} {'state size':>11} {'p50 ms':>8} {'p95 ms':>8}")
    for past in (int(n) for n in args.history.split(",")):
        for kept in (False, True):
            with tempfile.TemporaryDirectory() as scratch:
                file = Path(scratch) / "stripe-simulator.sqlite3"
                sim = StripeSimulator(state_file=file if kept else None)
                await history(sim, past)
                times = sorted(await per_request_ms(sim, args.requests))
                size = f"{size_on_disk(Path(scratch)) / 1024:,.0f} KiB" if kept else "-"
                sim.close()
            p50, p95 = statistics.median(times), times[int(len(times) * 0.95)]
            print(f"{'file' if kept else 'memory':>8} {past:>8} {size:>11} {p50:>8.2f} {p95:>8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
