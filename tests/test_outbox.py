"""The outbox: events committed with their change, delivered at least once, surviving crashes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from catalog import db, outbox
from catalog.worker import Worker

pytestmark = pytest.mark.asyncio


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
