"""each published table's column uniqueness, measured from its file, for releases published before it was

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 09:00:00

Anonymised grades (L4) refuse to filter or group by columns that single persons out, and publish now
measures, per column, the share of persons holding a value no one else holds
(``storage._uniqueness``). A release published earlier gets the same measurement from its stored
Parquet file here; a table whose file is missing is left unmeasured (its columns are then only as
isolating as its dictionary declares).
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import context, op

from catalog.db import JsonB

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

releases = sa.table(
    'releases',
    sa.column('id', sa.String),
    sa.column('status', sa.String),
    sa.column('dictionary', JsonB),
    sa.column('tables', JsonB),
)


def upgrade() -> None:
    from catalog.storage import Storage, measure_uniqueness

    settings = context.config.attributes.get('settings')
    if settings is None:
        return
    bind = op.get_bind()
    found = bind.execute(
        sa.select(releases.c.id, releases.c.dictionary, releases.c.tables).where(
            releases.c.status.in_(('published', 'withdrawn'))
        )
    ).all()
    storage = Storage(settings.data_dir / 'objects', memory_limit=settings.query_memory_limit, timeout_s=600)
    for release_id, dictionary, tables in found:
        dictionary = json.loads(dictionary) if isinstance(dictionary, str) else dictionary
        tables = json.loads(tables) if isinstance(tables, str) else dict(tables or {})
        changed = False
        for entry in dictionary:
            stats = tables.get(entry['table'])
            # Tables published then were named tables/<table>.parquet, in the local folder.
            path = storage.root / 'releases' / release_id / 'tables' / f"{entry['table']}.parquet"
            if stats is None or 'uniqueness' in stats or not path.is_file():
                continue
            stats['uniqueness'] = measure_uniqueness(storage, release_id, str(path), entry)
            changed = True
        if changed:
            bind.execute(sa.update(releases).where(releases.c.id == release_id).values(tables=tables))


def downgrade() -> None:
    pass  # the measurement is additive; older code ignores it
