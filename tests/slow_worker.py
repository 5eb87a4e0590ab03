"""A ``lode worker`` process whose handler never finishes, for tests/test_outbox.py to kill mid-handler.

    python -m tests.slow_worker STARTED_FILE      (settings from the LODE_* environment)

The handler writes the event's id to STARTED_FILE when it starts, then waits for the kill.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from catalog import db, outbox
from catalog.settings import load_settings
from catalog.worker import Worker


async def main(started: Path) -> None:
    settings = load_settings()
    engine = db.create_engine(settings)
    registry = outbox.Registry()

    async def never_finishes(ctx: outbox.JobContext, payload: dict) -> None:
        await asyncio.to_thread(started.write_text, ctx.event_id or "")
        await asyncio.Event().wait()

    registry.handler("thing.happened", never_finishes)
    lease = timedelta(seconds=settings.worker_lease_s)
    await Worker(db.create_sessionmaker(engine), registry, lease=lease, poll_interval=0.05).run()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
