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
        home = tmp_path / "mounted-later"
        settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{home / 'lode.db'}")
        engine = db.create_engine(settings)
        worker = Worker(db.create_sessionmaker(engine), outbox.Registry(), poll_interval=0.05)
        caplog.set_level(logging.INFO, logger="lode.worker")
        running = asyncio.create_task(worker.run())
        try:
            await asyncio.sleep(1.0)  # without backoff, 20 cycles; with it, 0.05 → 0.1 → 0.2 → 0.4 …
            failed = [r for r in caplog.records if r.getMessage().startswith("worker cycle failed")]
            assert 2 <= len(failed) <= 6
            assert [r.exc_info is not None for r in failed].count(True) == 1  # one traceback, the first
            home.mkdir()
            shutil.copy(sqlite_template, home / "lode.db")
            for _ in range(100):
                if any(r.getMessage() == "worker cycle recovered" for r in caplog.records):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the worker did not recover once the database was back")
        finally:
            worker.stop()
            await running
            await engine.dispose()


class TestDispatcherOutage:
    async def test_a_dispatcher_whose_database_is_gone_backs_off_and_recovers_when_it_returns(
        self, tmp_path, sqlite_template, caplog
    ) -> None:
        home = tmp_path / "mounted-later"
        settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{home / 'lode.db'}")
        engine = db.create_engine(settings)
        dispatcher = Dispatcher(
            db.create_sessionmaker(engine), pepper=b"p" * 32, timeout_s=1, allow_private=True, poll_interval=0.05
        )
        assert dispatcher.pause(10) == dispatcher.pause(1000) == DISPATCHER_MAX_PAUSE_S
        caplog.set_level(logging.INFO, logger="lode.webhooks")
        running = asyncio.create_task(dispatcher.run())
        try:
            await asyncio.sleep(1.0)  # without backoff, 20 claims; with it, 0.05 → 0.1 → 0.2 → 0.4 …
            failed = [r for r in caplog.records if r.getMessage().startswith("webhook claim failed")]
            assert 2 <= len(failed) <= 6
            assert [r.exc_info is not None for r in failed].count(True) == 1  # one traceback, the first
            home.mkdir()
            shutil.copy(sqlite_template, home / "lode.db")
            for _ in range(100):
                if any(r.getMessage() == "webhook claims recovered" for r in caplog.records):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the dispatcher did not recover once the database was back")
        finally:
            dispatcher.stop()
            await running
            await engine.dispose()
