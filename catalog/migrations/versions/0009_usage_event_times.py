"""usage events' times in SQLAlchemy's SQLite form, so they compare rightly with every other time

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29 17:20:00

The SQLite bulk insert of usage events bound times through the type's own processor, which left
SQLite's DATETIME one out: they were stored as "2026-11-29 17:00:00+00:00" (every one UTC) instead
of "2026-11-29 17:00:00.000000". SQLite compares times as text, and "+" sorts before ".", so an event
on a whole second fell outside a report window starting at that second. PostgreSQL stores
timestamptz and needs nothing.
"""

from __future__ import annotations

from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        return
    for column in ('occurred_at', 'created_at'):
        bare = f"substr({column}, 1, length({column}) - 6)"  # without the "+00:00"
        op.execute(
            f"UPDATE usage_events SET {column} = "
            f"CASE WHEN instr({bare}, '.') > 0 THEN {bare} ELSE {bare} || '.000000' END "
            f"WHERE {column} LIKE '%+00:00'"
        )


def downgrade() -> None:
    pass  # the old form was the defect; there is nothing to restore
