"""How long a worker killed mid-handler (SIGKILL) delays its event (run by hand; prints figures).

    .venv/bin/python bench/worker_crash_bench.py [--lease 10] [--runs 3]
    LODE_BENCH_PG_URL=postgresql://postgres@127.0.0.1:5432/lode_crash_bench .venv/bin/python bench/worker_crash_bench.py

Each run emits one event into a fresh database (SQLite in a temporary directory, and the scratch
PostgreSQL database when LODE_BENCH_PG_URL is set), starts a worker process (this script with
``--die``) whose handler never returns, waits a random part of a lease after the handler started
so the kill falls anywhere between two renewals, kills the process with SIGKILL, and times how long
a second worker (polling every 0.5 s, as ``lode worker`` does) takes to deliver the event. The
delay is the rest of the dead worker's lease plus one poll: at most one lease and a half-second.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scratch import prepare
from catalog import db, outbox
from catalog.settings import load_settings
from catalog.worker import Worker

ROOT = Path(__file__).resolve().parents[1]


def registry(handle: outbox.Handler) -> outbox.Registry:
    r = outbox.Registry()
    r.handler("bench.happened", handle)
    return r


async def die(started: Path) -> None:
    """The worker that is killed: its handler announces itself and never returns."""
    settings = load_settings()

    async def never_returns(ctx: outbox.JobContext, payload: dict) -> None:
        await asyncio.to_thread(started.write_text, ctx.event_id or "")
        await asyncio.Event().wait()

    sessions = db.create_sessionmaker(db.create_engine(settings))
    await Worker(sessions, registry(never_returns), lease=timedelta(seconds=settings.worker_lease_s)).run()


async def one_run(url: str, lease: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        settings = await prepare(url.format(tmp=tmp), Path(tmp))
        engine = db.create_engine(settings)
        sessions = db.create_sessionmaker(engine)
        async with db.write_transaction(sessions) as session:
            outbox.emit(session, "bench.happened", {})
        started = Path(tmp) / "started"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LODE_")} | {
            "LODE_ENV": "test",
            "LODE_DATA_DIR": str(settings.data_dir),
            "LODE_DATABASE_URL": settings.database_url,
            "LODE_KEY_PEPPER": settings.key_pepper.decode(),
            "LODE_WORKER_LEASE_S": str(lease),
            "LODE_LOG_LEVEL": "ERROR",
        }
        dying = await asyncio.create_subprocess_exec(sys.executable, __file__, "--die", str(started), cwd=ROOT, env=env)
        while True:  # the handler has started when it has written the file
            if started.exists():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(random.uniform(0, lease))
        dying.kill()
        await dying.wait()
        killed = time.monotonic()
        delivered = asyncio.Event()

        async def handle(ctx: outbox.JobContext, payload: dict) -> None:
            delivered.set()

        worker = Worker(sessions, registry(handle), lease=timedelta(seconds=lease))
        running = asyncio.create_task(worker.run())
        await delivered.wait()
        waited = time.monotonic() - killed
        worker.stop()
        await running
        await engine.dispose()
        return waited


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lease", type=float, default=10.0, help="LODE_WORKER_LEASE_S for both workers")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--die", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.die:
        await die(Path(args.die))
        return
    print("command:", shlex.join([sys.executable, *sys.argv]))
    urls = {"sqlite": "sqlite+aiosqlite:///{tmp}/lode.db"}
    if os.environ.get("LODE_BENCH_PG_URL"):
        urls["postgres"] = os.environ["LODE_BENCH_PG_URL"]
    for name, url in urls.items():
        delays = []
        for _ in range(args.runs):
            delays.append(await one_run(url, args.lease))
        print(
            f"{name}: lease {args.lease:g} s, kill -9 → delivered by another worker in "
            f"{', '.join(f'{d:.1f}' for d in delays)} s (median {statistics.median(delays):.1f} s, "
            f"max {max(delays):.1f} s, bound {args.lease + 0.5:g} s)"
        )


if __name__ == "__main__":
    asyncio.run(main())
