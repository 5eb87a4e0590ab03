"""The lock around the simulator's state, and the file that keeps that state across processes.

Stripe remembers what it was told; a database that keeps Stripe's ids (customers, Connect
accounts, checkout sessions) needs a simulator that does too, after a restart and in every
process that talks to it (``lode demo``, then ``lode serve`` with its workers). With a state file,
every outermost entry into ``StateLock`` opens a SQLite write transaction on that file (which
serialises the processes: ``BEGIN IMMEDIATE``), reloads the state if another process saved a newer
version, and on exit saves it if this process changed it. The whole state is one JSON document:
a development server's state is small, and a document cannot be half written.

Without a file the lock is only a re-entrant lock between this process's threads (the tests).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

_SCHEMA = "CREATE TABLE IF NOT EXISTS simulator_state (id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL, body TEXT NOT NULL)"


class StateLock:
    """Serialises access to the state; never held across an ``await``.

    ``dump`` answers the state as JSON-ready data; ``load`` replaces the state with such data.
    """

    def __init__(self, file: Path | None, dump: Callable[[], Any], load: Callable[[Any], None]) -> None:
        self.file = file
        self._dump, self._load = dump, load
        self._lock = threading.RLock()
        self._depth = 0  # changed only by the thread holding _lock
        self._db: sqlite3.Connection | None = None
        self._version = 0  # the version of the file this process's state matches
        self._saved = ""  # the document last loaded or saved, to skip saving an unchanged state

    def __enter__(self) -> StateLock:
        self._lock.acquire()
        self._depth += 1
        if self._depth == 1 and self.file is not None:
            try:
                self._begin()
            except BaseException:
                self._depth -= 1
                self._lock.release()
                raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            if self._depth == 1 and self._db is not None:
                self._end()
        finally:
            self._depth -= 1
            self._lock.release()

    def _begin(self) -> None:
        if self._db is None:
            assert self.file is not None
            # Another process holds the file only while it answers one request: a short wait.
            self._db = sqlite3.connect(self.file, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute(_SCHEMA)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute("SELECT version, body FROM simulator_state WHERE version != ?", (self._version,))
            found = row.fetchone()
            if found is not None:
                self._load(json.loads(found[1]))
                self._version, self._saved = found[0], found[1]
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _end(self) -> None:
        assert self._db is not None
        try:
            body = json.dumps(self._dump(), ensure_ascii=False, separators=(",", ":"))
            if body != self._saved:
                self._db.execute(
                    "INSERT INTO simulator_state (id, version, body) VALUES (1, ?, ?) "
                    "ON CONFLICT (id) DO UPDATE SET version = excluded.version, body = excluded.body",
                    (self._version + 1, body),
                )
                self._version, self._saved = self._version + 1, body
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
