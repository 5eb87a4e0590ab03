"""The worker's loop through a database outage: it backs off, logs the cause once, and recovers."""

from __future__ import annotations

import asyncio
import logging
import shutil

from catalog import db, outbox
from catalog.notifications.dispatcher import MAX_PAUSE_S as DISPATCHER_MAX_PAUSE_S
from catalog.notifications.dispatcher import Dispatcher
from catalog.worker import MAX_PAUSE_S, Worker
from tests.conftest import make_settings


class TestOutage:
    def test_the_pause_doubles_with_each_failure_up_to_its_ceiling(self) -> None:
        worker = Worker(None, outbox.Registry(), poll_interval=0.5)  # type: ignore[arg-type]  # never connects
        assert [worker.pause(n) for n in range(4)] == [0.5, 1.0, 2.0, 4.0]
        assert worker.pause(10) == worker.pause(1000) == MAX_PAUSE_S

    async def test_a_worker_whose_database_is_gone_backs_off_and_recovers_when_it_returns(
        self, tmp_path, sqlite_template, caplog
    ) -> None:
        await backs_off_and_recovers(
            lambda sessions: Worker(sessions, outbox.Registry(), poll_interval=0.05),
            "lode.worker",
            ("worker cycle failed", "worker cycle recovered"),
            tmp_path,
            sqlite_template,
            caplog,
        )


class TestDispatcherOutage:
    async def test_a_dispatcher_whose_database_is_gone_backs_off_and_recovers_when_it_returns(
        self, tmp_path, sqlite_template, caplog
    ) -> None:
        def dispatcher(sessions):
            made = Dispatcher(sessions, pepper=b"p" * 32, timeout_s=1, allow_private=True, poll_interval=0.05)
            assert made.pause(10) == made.pause(1000) == DISPATCHER_MAX_PAUSE_S
            return made

        await backs_off_and_recovers(
            dispatcher,
            "lode.webhooks",
            ("webhook claim failed", "webhook claims recovered"),
            tmp_path,
            sqlite_template,
            caplog,
        )


async def backs_off_and_recovers(make, logger, messages, tmp_path, sqlite_template, caplog) -> None:
    """A loop (``make(sessions)``, with ``run`` and ``stop``) on a database that is not there yet: it
    logs the cause once with its traceback, backs off, and recovers once the database appears."""
    failed_prefix, recovered = messages
    home = tmp_path / "mounted-later"
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{home / 'lode.db'}")
    engine = db.create_engine(settings)
    loop = make(db.create_sessionmaker(engine))
    caplog.set_level(logging.INFO, logger=logger)
    running = asyncio.create_task(loop.run())
    try:
        await asyncio.sleep(1.0)  # without backoff, 20 cycles; with it, 0.05 → 0.1 → 0.2 → 0.4 …
        failed = [r for r in caplog.records if r.getMessage().startswith(failed_prefix)]
        assert 2 <= len(failed) <= 6
        assert [r.exc_info is not None for r in failed].count(True) == 1  # one traceback, the first
        home.mkdir()
        shutil.copy(sqlite_template, home / "lode.db")
        for _ in range(100):
            if any(r.getMessage() == recovered for r in caplog.records):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"{logger} did not recover once the database was back")
    finally:
        loop.stop()
        await running
        await engine.dispose()
