"""Periodic jobs while workers of two releases of Lode run side by side (a rolling upgrade)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from catalog import outbox
from catalog.worker import Worker

pytestmark = pytest.mark.asyncio


def registry_of(names: list[str], runs: list[str]) -> outbox.Registry:
    registry = outbox.Registry()
    for name in names:

        async def job(ctx: outbox.JobContext, name: str = name) -> None:
            runs.append(name)

        registry.every(name, timedelta(hours=1), job)
    return registry


class TestJobsDuringARollout:
    async def test_workers_of_an_older_and_a_newer_release_starting_together_schedule_every_job(self, sessions) -> None:
        runs: list[str] = []
        older = [Worker(sessions, registry_of(["sweep"], runs)) for _ in range(3)]
        newer = [Worker(sessions, registry_of(["sweep", "report"], runs)) for _ in range(3)]
        await asyncio.gather(*(w.run_once() for w in (*older, *newer)))
        async with sessions() as s:
            scheduled = set((await s.execute(select(outbox.PeriodicJob.name))).scalars())
        assert scheduled == {"sweep", "report"}
        assert sorted(runs) == ["report", "sweep"]  # each due job ran once, whichever worker won it
