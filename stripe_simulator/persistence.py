"""The lock around the simulator's state, and the file that keeps that state across processes.

Stripe remembers what it was told; a database that keeps Stripe's ids (customers, Connect
accounts, checkout sessions) needs a simulator that does too, after a restart and in every
process that talks to it (``lode demo``, then ``lode serve`` with its workers).

With a ``StateFile``, every outermost entry into ``StateLock`` opens a SQLite write transaction
on the file (``BEGIN IMMEDIATE``: the processes take turns, so no update is lost), takes in what
other processes saved since this one last looked, and on exit writes what this one changed:
one row per object, written only when its JSON changed. A request costs what it touches, not
what the simulator holds. Which objects a request may have changed, the ``Store`` notes as it
hands them out (``Store.touched``).

Without a file the lock is only a re-entrant lock between this process's threads (the tests).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from stripe_simulator.objects import Store

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, "
    "version INTEGER NOT NULL, body TEXT NOT NULL, private TEXT, PRIMARY KEY (kind, key))",
    "CREATE INDEX IF NOT EXISTS objects_by_version ON objects (version)",
    # Idempotent results, by (Stripe-Account, Idempotency-Key); never changed once stored.
    "CREATE TABLE IF NOT EXISTS replays (account TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL, "
    "body TEXT NOT NULL, PRIMARY KEY (account, key))",
    "CREATE INDEX IF NOT EXISTS replays_by_version ON replays (version)",
    "CREATE TABLE IF NOT EXISTS meta (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, "
    "undelivered TEXT NOT NULL, clock_offset INTEGER NOT NULL)",
)

Replays = dict[tuple[str, str], tuple[tuple[Any, ...], int, bytes, dict[str, str]]]


def _text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class StateFile:
    """The state of one simulator (``store`` and its idempotent ``replays``) in a SQLite file."""

    def __init__(self, path: Path, store: Store, replays: Replays) -> None:
        self.path, self.store, self.replays = path, store, replays
        self._db: sqlite3.Connection | None = None
        self._version = 0  # the file's version this process's state includes
        self._saved: dict[tuple[str, str], str] = {}  # the JSON of each object as last loaded or saved
        self._saved_replays: set[tuple[str, str]] = set()
        self._meta = ""

    def begin(self) -> None:
        if self._db is None:
            # Another process holds the file only while it answers one request: a short wait.
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            # As Lode's own SQLite database: a commit waits for no disk flush, a crash loses no consistency.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self._db.execute(statement)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._take_in()
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _take_in(self) -> None:
        assert self._db is not None
        self.store.touched.clear()
        meta = self._db.execute("SELECT version, undelivered, clock_offset FROM meta").fetchone()
        if meta is None or meta[0] == self._version:
            return
        since = self._version
        rows = self._db.execute(
            "SELECT kind, key, seq, body, private FROM objects WHERE version > ?", (since,)
        ).fetchall()
        for kind, key, seq, body, private in rows:
            self.store.load(kind, key, seq, json.loads(body), json.loads(private) if private else None)
            self._saved[(kind, key)] = body + (private or "")
        if any(kind == "event" for kind, *_ in rows):
            self.store.order_events()
        for account, key, body in self._db.execute(
            "SELECT account, key, body FROM replays WHERE version > ?", (since,)
        ):
            method, path, params, status, payload, headers = json.loads(body)
            self.replays[(account, key)] = ((method, path, params), status, payload.encode(), headers)
            self._saved_replays.add((account, key))
        self.store.undelivered, self.store.clock_offset = json.loads(meta[1]), meta[2]
        self._version, self._meta = meta[0], meta[1] + str(meta[2])

    def end(self) -> None:
        assert self._db is not None
        try:
            self._write_out()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _write_out(self) -> None:
        assert self._db is not None
        version = self._version + 1
        objects = []
        for kind, key in self.store.touched:
            record = self.store.record(kind, key)
            if record is None:
                continue  # made and rolled back within the request
            seq, obj, private = record
            body, extra = _text(obj), _text(private) if private is not None else None
            if self._saved.get((kind, key)) != body + (extra or ""):
                objects.append((kind, key, seq, version, body, extra))
                self._saved[(kind, key)] = body + (extra or "")
        self.store.touched.clear()
        replays = []
        for account, key in self.replays.keys() - self._saved_replays:
            (method, path, params), status, payload, headers = self.replays[(account, key)]
            replays.append((account, key, version, _text([method, path, params, status, payload.decode(), headers])))
            self._saved_replays.add((account, key))
        undelivered = _text(self.store.undelivered)
        meta = undelivered + str(self.store.clock_offset)
        if not objects and not replays and meta == self._meta:
            return
        self._db.executemany(
            "INSERT INTO objects (kind, key, seq, version, body, private) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, key) DO UPDATE SET seq = excluded.seq, version = excluded.version, "
            "body = excluded.body, private = excluded.private",
            objects,
        )
        self._db.executemany("INSERT INTO replays (account, key, version, body) VALUES (?, ?, ?, ?)", replays)
        self._db.execute(
            "INSERT INTO meta (id, version, undelivered, clock_offset) VALUES (1, ?, ?, ?) ON CONFLICT (id) "
            "DO UPDATE SET version = excluded.version, undelivered = excluded.undelivered, "
            "clock_offset = excluded.clock_offset",
            (version, undelivered, self.store.clock_offset),
        )
        self._version, self._meta = version, meta

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class StateLock:
    """Serialises access to the state, between threads and, with a ``file``, between processes.

    Re-entrant; never held across an ``await``.
    """

    def __init__(self) -> None:
        self.file: StateFile | None = None
        self._lock = threading.RLock()
        self._depth = 0  # changed only by the thread holding _lock

    def __enter__(self) -> StateLock:
        self._lock.acquire()
        self._depth += 1
        if self._depth == 1 and self.file is not None:
            try:
                self.file.begin()
            except BaseException:
                self._depth -= 1
                self._lock.release()
                raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._depth == 1 and self.file is not None:
                self.file.end()
        finally:
            self._depth -= 1
            self._lock.release()

    def close(self) -> None:
        with self._lock:
            if self.file is not None:
                self.file.close()
