"""Migration 0009: usage events stored by the old SQLite bulk insert get SQLAlchemy's time form."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command

from catalog.migrations import alembic_config
from tests.conftest import make_settings


def test_old_event_times_are_rewritten_and_others_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    config = alembic_config(make_settings(tmp_path, f"sqlite+aiosqlite:///{path}"))
    command.upgrade(config, "0008")
    conn = sqlite3.connect(path)
    columns = [row[1] for row in conn.execute("PRAGMA table_info(usage_events)")]
    rows = [  # (id, occurred_at, created_at) as the old insert and the rest of Lode wrote them
        ("use_old_whole", "2026-11-29 17:00:00+00:00", "2026-11-29 17:01:02.123456+00:00"),
        ("use_right", "2026-11-29 17:00:00.000001", "2026-11-29 17:01:02.000000"),
    ]
    for id_, occurred, created in rows:
        values = dict.fromkeys(columns)
        values.update(
            id=id_, licence_id="lic_gone", idempotency_key=id_, consumer_org_id="org_c", product_id="prd_p",
            dimension="queries", quantity=1, occurred_at=occurred, source="reported", payload_sha256="0" * 64,
            over_cap=0, created_at=created,
        )  # fmt: skip
        conn.execute(
            f"INSERT INTO usage_events ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
            [values[c] for c in columns],
        )
    conn.commit()
    conn.close()

    command.upgrade(config, "head")

    conn = sqlite3.connect(path)
    try:
        stored = conn.execute("SELECT id, occurred_at, created_at FROM usage_events ORDER BY id").fetchall()
    finally:
        conn.close()
    assert stored == [
        ("use_old_whole", "2026-11-29 17:00:00.000000", "2026-11-29 17:01:02.123456"),
        ("use_right", "2026-11-29 17:00:00.000001", "2026-11-29 17:01:02.000000"),
    ]
