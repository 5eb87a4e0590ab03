"""catalogue version: one counter that every change to what a public catalogue view shows moves

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 17:30:00

API nodes cache public product pages and search pages in memory and check, on every read, that
the counter is where it was when they built the page (catalog/products/views.py). The counter is
moved by triggers, not by the code that writes, so no writer can forget it: any insert, update or
delete of a product, its sources, releases, release files, terms or plans, or its search rows, and
a change of an organisation's name or slug (products show their owner's, search pages their
providers').

On SQLite a row trigger moves it inside the writing transaction (SQLite writers are serial). On
PostgreSQL the trigger is a deferred constraint trigger: it runs at commit, once per transaction,
so the counter's row lock is the last lock a writer takes and is held only while it commits —
taken at the first write it would serialise every catalogue writer for its whole transaction and
could deadlock against the product row locks they take in other orders.

Upserted rather than updated, so the counter cannot silently stop if its row were ever lost.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

# Every table a public view reads (search pages read the search tables, which the catalogue keeps in
# step with products in the same transactions: listed here too, so a re-index alone also counts);
# organisations only for the columns a view shows.
TABLES = (
    'products', 'product_sources', 'releases', 'release_files', 'terms', 'plans',
    'search_documents', 'search_text', 'search_facet_counts',
)
BUMP_SQLITE = (
    "INSERT INTO catalogue_version (id, version) VALUES (1, 1) "
    "ON CONFLICT (id) DO UPDATE SET version = catalogue_version.version + 1;"
)
ORG_CHANGED = 'old.name IS NOT new.name OR old.slug IS NOT new.slug'
ORG_CHANGED_PG = 'OLD.name IS DISTINCT FROM NEW.name OR OLD.slug IS DISTINCT FROM NEW.slug'

POSTGRES_FUNCTION = """CREATE FUNCTION catalogue_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Once per transaction: the deferred trigger runs for every changed row at commit.
    IF current_setting('lode.catalogue_bumped', true) IS DISTINCT FROM txid_current()::text THEN
        PERFORM set_config('lode.catalogue_bumped', txid_current()::text, true);
        INSERT INTO catalogue_version (id, version) VALUES (1, 1)
        ON CONFLICT (id) DO UPDATE SET version = catalogue_version.version + 1;
    END IF;
    RETURN NULL;
END $$"""


def _sqlite_up() -> list[str]:
    statements = [
        f'CREATE TRIGGER catalogue_version_{table}_{event.lower()} AFTER {event} ON {table} BEGIN {BUMP_SQLITE} END'
        for table in TABLES
        for event in ('INSERT', 'UPDATE', 'DELETE')
    ]
    statements.append(
        f'CREATE TRIGGER catalogue_version_organisations_update AFTER UPDATE OF name, slug ON organisations '
        f'WHEN {ORG_CHANGED} BEGIN {BUMP_SQLITE} END'
    )
    return statements


def _sqlite_down() -> list[str]:
    names = [f'catalogue_version_{t}_{e}' for t in TABLES for e in ('insert', 'update', 'delete')]
    return [f'DROP TRIGGER IF EXISTS {name}' for name in [*names, 'catalogue_version_organisations_update']]


def _postgres_up() -> list[str]:
    statements = [POSTGRES_FUNCTION]
    statements += [
        f'CREATE CONSTRAINT TRIGGER catalogue_version_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} '
        'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION catalogue_version_bump()'
        for table in TABLES
    ]
    statements.append(
        'CREATE CONSTRAINT TRIGGER catalogue_version_organisations AFTER UPDATE OF name, slug ON organisations '
        f'DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN ({ORG_CHANGED_PG}) '
        'EXECUTE FUNCTION catalogue_version_bump()'
    )
    return statements


def _postgres_down() -> list[str]:
    drops = [f'DROP TRIGGER IF EXISTS catalogue_version_{t} ON {t}' for t in (*TABLES, 'organisations')]
    return [*drops, 'DROP FUNCTION IF EXISTS catalogue_version_bump()']


def upgrade() -> None:
    op.create_table('catalogue_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_catalogue_version'))
    )
    op.execute('INSERT INTO catalogue_version (id, version) VALUES (1, 1)')
    for statement in _sqlite_up() if op.get_bind().dialect.name == 'sqlite' else _postgres_up():
        op.execute(statement)


def downgrade() -> None:
    for statement in _sqlite_down() if op.get_bind().dialect.name == 'sqlite' else _postgres_down():
        op.execute(statement)
    op.drop_table('catalogue_version')
