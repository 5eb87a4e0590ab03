"""The outbox: events committed with their change, delivered at least once, surviving crashes."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from catalog import db, outbox
from catalog.settings import Settings
from catalog.worker import Worker
from tests.conftest import PEPPER

pytestmark = pytest.mark.asyncio

# Short enough that a test waits seconds for a lapse, long enough that a busy machine renews in time.
LEASE = timedelta(seconds=2)
ROOT = Path(__file__).resolve().parent.parent


def recording_registry(seen: list, *, fail_times: int = 0) -> outbox.Registry:
    registry = outbox.Registry()
    failures = {"left": fail_times}

    async def handle(ctx: outbox.JobContext, payload: dict) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise RuntimeError("transient")
        seen.append(payload)

    registry.handler("thing.happened", handle)
    return registry


async def emit_committed(sessions, n: int = 1) -> None:
    async with db.write_transaction(sessions) as s:
        for i in range(n):
            outbox.emit(s, "thing.happened", {"i": i})


async def the_event(sessions) -> outbox.OutboxEvent:
    async with sessions() as s:
        return (await s.execute(select(outbox.OutboxEvent))).scalar_one()


async def until(condition: Callable[[], object], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {within} s")
        await asyncio.sleep(0.05)


class TestDelivery:
    async def test_an_event_rolled_back_with_its_change_is_never_delivered(self, sessions) -> None:
        with pytest.raises(RuntimeError):
            async with db.write_transaction(sessions) as s:
                outbox.emit(s, "thing.happened", {"i": 1})
                raise RuntimeError("the change failed")
        seen: list = []
        assert await Worker(sessions, recording_registry(seen)).run_once() == 0
        assert seen == []

    async def test_events_survive_a_crash_between_commit_and_delivery(self, sessions) -> None:
        await emit_committed(sessions, 3)
        # The process dies after committing (nothing delivered); a new worker after the restart:
        seen: list = []
        assert await Worker(sessions, recording_registry(seen)).run_once() == 3
        assert sorted(p["i"] for p in seen) == [0, 1, 2]
        assert await Worker(sessions, recording_registry(seen)).run_once() == 0  # delivered once

    async def test_a_worker_dying_mid_delivery_is_covered_by_its_lease(self, sessions) -> None:
        await emit_committed(sessions)
        claimed = await outbox.claim(sessions)  # worker A claims, then dies before marking delivered
        assert len(claimed) == 1
        seen: list = []
        assert await Worker(sessions, recording_registry(seen)).run_once() == 0  # still leased to A
        async with db.write_transaction(sessions) as s:  # time passes beyond the lease
            await s.execute(update(outbox.OutboxEvent).values(locked_until=db.utcnow() - timedelta(seconds=1)))
        assert await Worker(sessions, recording_registry(seen)).run_once() == 1
        assert seen == [{"i": 0}]

    async def test_failures_retry_with_backoff_until_delivered(self, sessions) -> None:
        await emit_committed(sessions)
        seen: list = []
        worker = Worker(sessions, recording_registry(seen, fail_times=2))
        for _ in range(3):
            await worker.run_once()
            async with db.write_transaction(sessions) as s:  # skip the backoff wait
                await s.execute(update(outbox.OutboxEvent).values(available_at=db.utcnow()))
        assert seen == [{"i": 0}]
        async with sessions() as s:
            event = (await s.execute(select(outbox.OutboxEvent))).scalar_one()
        assert event.status == "delivered" and event.attempts == 3

    async def test_an_event_that_keeps_failing_is_parked_dead(self, sessions) -> None:
        await emit_committed(sessions)
        async with db.write_transaction(sessions) as s:
            await s.execute(update(outbox.OutboxEvent).values(attempts=outbox.MAX_ATTEMPTS - 1))
        await Worker(sessions, recording_registry([], fail_times=1)).run_once()
        async with sessions() as s:
            event = (await s.execute(select(outbox.OutboxEvent))).scalar_one()
        assert event.status == "dead" and "transient" in event.last_error


class TestPeriodicJobs:
    async def test_a_due_job_runs_once_across_workers(self, sessions) -> None:
        runs: list = []

        async def job(ctx: outbox.JobContext) -> None:
            runs.append(1)

        registry = outbox.Registry()
        registry.every("sweep", timedelta(hours=1), job)
        first, second = Worker(sessions, registry), Worker(sessions, registry)
        await first.run_once()
        await second.run_once()
        assert runs == [1]

    async def test_a_job_running_longer_than_its_interval_never_runs_twice_at_once(self, sessions) -> None:
        running: list[int] = []
        overlap: list[int] = []

        async def job(ctx: outbox.JobContext) -> None:
            running.append(1)
            overlap.append(len(running))
            await asyncio.sleep(2 * LEASE.total_seconds())
            running.pop()

        registry = outbox.Registry()
        registry.every("sweep", timedelta(seconds=1), job)
        first = asyncio.create_task(Worker(sessions, registry, lease=LEASE).run_once())
        await until(lambda: running, 10)
        second = Worker(sessions, registry, lease=LEASE)
        while not first.done():
            await second.run_once()
            await asyncio.sleep(0.1)
        await first
        assert overlap and max(overlap) == 1

    async def test_a_job_whose_worker_died_runs_again_once_its_lease_lapses(self, sessions) -> None:
        starts: list[float] = []

        async def job(ctx: outbox.JobContext) -> None:
            starts.append(time.monotonic())
            await asyncio.Event().wait()  # never ends

        registry = outbox.Registry()
        registry.every("sweep", timedelta(hours=1), job)
        dying = asyncio.create_task(Worker(sessions, registry, lease=LEASE).run_once())
        await until(lambda: starts, 10)
        await asyncio.sleep(LEASE.total_seconds() / 2)  # mid-run, after a renewal
        dying.cancel()  # the worker dies: nothing renews or finishes the run
        with pytest.raises(asyncio.CancelledError):
            await dying
        died = time.monotonic()
        other = asyncio.create_task(Worker(sessions, registry, lease=LEASE, poll_interval=0.05).run())
        try:
            await until(lambda: len(starts) == 2, 10 * LEASE.total_seconds())
        finally:
            other.cancel()  # its run of the job never ends either
            with pytest.raises(asyncio.CancelledError):
                await other
        assert starts[1] - died < 2 * LEASE.total_seconds()


class TestLease:
    """A worker renews its lease while a handler runs; a dead worker's events are claimed within seconds."""

    async def test_a_handler_outliving_its_lease_keeps_it_and_runs_once(self, sessions) -> None:
        await emit_committed(sessions)
        runs: list[str] = []

        async def slow(ctx: outbox.JobContext, payload: dict) -> None:
            runs.append("slow")
            await asyncio.sleep(2 * LEASE.total_seconds())

        registry = outbox.Registry()
        registry.handler("thing.happened", slow)
        holder = asyncio.create_task(Worker(sessions, registry, lease=LEASE).run_once())
        await until(lambda: runs, 10)
        other = Worker(sessions, recording_registry(seen := []), lease=LEASE)
        while not holder.done():  # another worker keeps trying while the handler runs past its lease
            await other.run_once()
            await asyncio.sleep(0.1)
        assert await holder == 1
        assert runs == ["slow"] and seen == []
        event = await the_event(sessions)
        assert event.status == "delivered" and event.attempts == 1

    async def test_a_renewal_that_finds_the_lease_taken_cancels_the_handler(self, sessions) -> None:
        await emit_committed(sessions)
        outcome: list[str] = []

        async def slow(ctx: outbox.JobContext, payload: dict) -> None:
            outcome.append("started")
            try:
                await asyncio.sleep(3 * LEASE.total_seconds())
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise
            outcome.append("finished")

        registry = outbox.Registry()
        registry.handler("thing.happened", slow)
        holder = asyncio.create_task(Worker(sessions, registry, lease=LEASE).run_once())
        await until(lambda: outcome, 10)
        # This worker stalled past its lease and another claimed the event meanwhile:
        async with db.write_transaction(sessions) as s:
            await s.execute(
                update(outbox.OutboxEvent).values(lock_token="another-worker", locked_until=db.utcnow() + LEASE)
            )
        await asyncio.wait_for(holder, 2 * LEASE.total_seconds())
        assert outcome == ["started", "cancelled"]
        event = await the_event(sessions)  # left to the worker that holds it now
        assert event.status == "pending" and event.lock_token == "another-worker"

    async def test_a_worker_killed_mid_handler_is_replaced_within_two_leases(
        self, sessions, settings: Settings, tmp_path: Path
    ) -> None:
        await emit_committed(sessions)
        started = tmp_path / "started"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LODE_")} | {
            "LODE_ENV": "test",
            "LODE_DATA_DIR": str(settings.data_dir),
            "LODE_DATABASE_URL": settings.database_url,
            "LODE_KEY_PEPPER": PEPPER,
            "LODE_WORKER_LEASE_S": str(LEASE.total_seconds()),
            "LODE_LOG_LEVEL": "ERROR",
        }
        dying = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.slow_worker", str(started), cwd=ROOT, env=env
        )
        try:
            await until(started.exists, 60)
            await asyncio.sleep(LEASE.total_seconds())  # mid-handler, after a renewal or two
        finally:
            dying.kill()  # SIGKILL: no cleanup, no mark, the lease left as it was
            await dying.wait()
        killed = time.monotonic()
        seen: list = []
        worker = Worker(sessions, recording_registry(seen), lease=LEASE, poll_interval=0.05)
        running = asyncio.create_task(worker.run())
        try:
            await until(lambda: seen, 10 * LEASE.total_seconds())
            waited = time.monotonic() - killed
        finally:
            worker.stop()
            await running
        assert seen == [{"i": 0}] and waited < 2 * LEASE.total_seconds()
        event = await the_event(sessions)
        assert event.status == "delivered" and event.attempts == 2
