"""The embedded default's SQLite connection (catalog/sqlite_driver.py): one thread hop a statement,
and otherwise the behaviour SQLAlchemy's aiosqlite adapter gave — results, row counts, errors,
locking and clean shutdown."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import time
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog import db, sqlite_driver
from tests.conftest import make_settings

pytestmark = pytest.mark.asyncio


@pytest.fixture(name="engine")
async def fx_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}"))
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL)"))
    yield engine
    await engine.dispose()


@pytest.fixture(name="calls")
def fx_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every function run on a connection's thread, in order."""
    calls: list[str] = []
    original = sqlite_driver.Connection.call

    async def counted(self, fn, *args):
        calls.append(getattr(fn, "__name__", "?"))
        return await original(self, fn, *args)

    monkeypatch.setattr(sqlite_driver.Connection, "call", counted)
    return calls


def _driver_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("lode-sqlite")]


async def test_the_engine_runs_on_the_one_hop_connection(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert isinstance(raw.driver_connection, sqlite_driver.Connection)


async def test_each_statement_is_one_call_on_the_connection_thread(engine: AsyncEngine, calls: list[str]) -> None:
    async with engine.connect() as conn:
        calls.clear()
        rows = (await conn.execute(text("SELECT 1 UNION ALL SELECT 2"))).all()
    assert rows == [(1,), (2,)]
    # db.py's BEGIN and the SELECT are one call each (aiosqlite's adapter made four of each);
    # giving the connection back to the pool rolls back, one more.
    assert calls == ["_run", "_run", "rollback"]

    calls.clear()
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (name) VALUES ('x')"))
    # BEGIN, INSERT, COMMIT; the pool's rollback on return finds no transaction and costs no call.
    assert calls == ["_run", "_run", "commit"]


async def test_a_single_read_is_one_call(engine: AsyncEngine, calls: list[str]) -> None:
    async with db.single_read(engine) as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 0
    assert calls == ["_run"]  # no BEGIN before it, no ROLLBACK after


async def test_rows_rowcount_and_returning(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        many = await conn.exec_driver_sql("INSERT INTO t (name) VALUES (?)", [("a",), ("b",), ("c",)])
        assert many.rowcount == 3
        returned = await conn.execute(text("INSERT INTO t (name) VALUES ('d'), ('e') RETURNING name"))
        assert sorted(returned.scalars()) == ["d", "e"]
        updated = await conn.execute(text("UPDATE t SET name = name || '!' WHERE name IN ('a', 'b')"))
        assert updated.rowcount == 2
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 5
        result = await conn.execute(text("SELECT name FROM t ORDER BY id"))
        assert result.fetchone() == ("a!",)
        assert result.cursor.fetchmany(0) == []
        assert result.fetchmany(2) == [("b!",), ("c",)]
        assert result.fetchall() == [("d",), ("e",)]


async def test_a_constraint_error_is_sqlalchemys_and_the_connection_recovers(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (name) VALUES ('dup')"))
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (name) VALUES ('dup')"))
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1


async def test_a_writer_waiting_for_the_lock_does_not_block_the_event_loop(engine: AsyncEngine) -> None:
    """BEGIN IMMEDIATE waits on the connection's own thread while other coroutines run on."""
    first_holds = asyncio.Event()
    release = asyncio.Event()
    ticks = 0

    async def first() -> None:
        async with engine.connect() as conn:
            conn = await conn.execution_options(lode_write=True)
            async with conn.begin():
                await conn.execute(text("INSERT INTO t (name) VALUES ('first')"))
                first_holds.set()
                await release.wait()

    async def second() -> list[str]:
        await first_holds.wait()
        async with engine.connect() as conn:
            conn = await conn.execution_options(lode_write=True)
            async with conn.begin():  # waits for first's commit, on its own thread
                await conn.execute(text("INSERT INTO t (name) VALUES ('second')"))
            return list((await conn.execute(text("SELECT name FROM t ORDER BY id"))).scalars())

    async def ticker() -> None:
        nonlocal ticks
        await first_holds.wait()
        for _ in range(10):
            await asyncio.sleep(0.01)
            ticks += 1
        release.set()

    _, names, _ = await asyncio.gather(first(), second(), ticker())
    assert ticks == 10  # the loop kept running while the second writer waited
    assert names == ["first", "second"]


async def test_dispose_closes_every_connection_thread(tmp_path: Path) -> None:
    # Threads are told apart by identity: other engines' threads may still be ending meanwhile.
    before = set(_driver_threads())
    engine = db.create_engine(make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'threads.db'}"))
    async with engine.connect() as a, engine.connect() as b:
        await a.execute(text("SELECT 1"))
        await b.execute(text("SELECT 1"))
        mine = set(_driver_threads()) - before
        assert len(mine) == 2
    await engine.dispose()
    for _ in range(200):
        if not any(t.is_alive() for t in mine):
            break
        await asyncio.sleep(0.01)
    assert not any(t.is_alive() for t in mine)


async def test_a_closed_connection_refuses_work(tmp_path: Path) -> None:
    conn = await sqlite_driver.Connection.open(str(tmp_path / "closed.db"))
    await conn.close()
    await conn.close()  # twice is harmless
    with pytest.raises(Exception, match="closed"):
        await conn.call(lambda c: c.execute("SELECT 1"))


async def test_a_missing_directory_is_an_operational_error(tmp_path: Path) -> None:
    engine = db.create_engine(make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'nowhere' / 'x.db'}"))
    try:
        with pytest.raises(OperationalError):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def test_stop_closes_on_the_thread_and_is_idempotent(tmp_path: Path) -> None:
    """What SQLAlchemy's terminate and garbage collection call: no waiting, closed once."""
    conn = await sqlite_driver.Connection.open(str(tmp_path / "stop.db"))
    conn.stop()
    conn.stop()
    with pytest.raises(Exception, match="closed"):
        await conn.call(lambda c: c.execute("SELECT 1"))


async def test_an_async_creator_is_refused_not_ignored(tmp_path: Path) -> None:
    async def creator():  # pragma: no cover - never called
        raise AssertionError

    engine = db.create_engine(
        make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'creator.db'}"), async_creator=creator
    )
    try:
        with pytest.raises(ArgumentError, match="async_creator"):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


async def test_a_cancelled_call_leaves_the_connection_usable(tmp_path: Path) -> None:
    """The caller went away mid-statement: the statement finishes on the thread, its answer is dropped,
    and the next call gets its own answer, not the abandoned one."""
    conn = await sqlite_driver.Connection.open(str(tmp_path / "cancel.db"))
    started = threading.Event()

    def slow(c):
        started.set()
        time.sleep(0.2)
        return "abandoned"

    try:
        waiting = asyncio.ensure_future(conn.call(slow))
        await asyncio.to_thread(started.wait, 5)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await conn.call(lambda c: c.execute("SELECT 41 + 1").fetchone()) == (42,)
    finally:
        await conn.close()


async def test_a_connection_dropped_without_close_ends_its_thread(tmp_path: Path) -> None:
    before = set(_driver_threads())
    conn = await sqlite_driver.Connection.open(str(tmp_path / "dropped.db"))
    await conn.call(lambda c: c.execute("SELECT 1").fetchall())
    (mine,) = set(_driver_threads()) - before
    del conn
    gc.collect()
    mine.join(timeout=5)
    assert not mine.is_alive()


async def test_the_thread_keeps_nothing_of_a_finished_call(tmp_path: Path) -> None:
    """An idle pooled connection must not hold its last answer (rows, parameters) until its next call."""

    class Answer:
        pass

    conn = await sqlite_driver.Connection.open(str(tmp_path / "keep.db"))
    try:
        answer = await conn.call(lambda c: Answer())
        gone = weakref.ref(answer)
        del answer
        await asyncio.sleep(0)  # the loop lets go of the step that handed the answer over
        gc.collect()
        assert gone() is None
    finally:
        await conn.close()


async def test_stop_and_a_failed_open_end_the_thread(tmp_path: Path) -> None:
    before = set(_driver_threads())
    conn = await sqlite_driver.Connection.open(str(tmp_path / "stopped.db"))
    with pytest.raises(sqlite3.OperationalError):
        await sqlite_driver.Connection.open(str(tmp_path / "nowhere" / "x.db"))
    mine = set(_driver_threads()) - before
    assert len(mine) == 2
    conn.stop()
    for thread in mine:
        thread.join(timeout=5)
        assert not thread.is_alive()
