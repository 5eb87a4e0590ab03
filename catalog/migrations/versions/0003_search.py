"""search: product search documents, precomputed facet counts, FTS5 (SQLite) / tsvector + pg_trgm (PostgreSQL)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# External content: the token text lives once, in search_text; the triggers keep the index in
# step with every insert, delete and text change (status-only updates leave it alone).
SQLITE_UP = [
    """CREATE VIRTUAL TABLE search_fts USING fts5(
        head, body, content='search_text', content_rowid='doc_id', tokenize='unicode61 remove_diacritics 0'
    )""",
    """CREATE TRIGGER search_text_ai AFTER INSERT ON search_text BEGIN
        INSERT INTO search_fts(rowid, head, body) VALUES (new.doc_id, new.head, new.body);
    END""",
    """CREATE TRIGGER search_text_ad AFTER DELETE ON search_text BEGIN
        INSERT INTO search_fts(search_fts, rowid, head, body) VALUES ('delete', old.doc_id, old.head, old.body);
    END""",
    """CREATE TRIGGER search_text_au AFTER UPDATE OF head, body ON search_text
        WHEN old.head IS NOT new.head OR old.body IS NOT new.body BEGIN
        INSERT INTO search_fts(search_fts, rowid, head, body) VALUES ('delete', old.doc_id, old.head, old.body);
        INSERT INTO search_fts(rowid, head, body) VALUES (new.doc_id, new.head, new.body);
    END""",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS search_text_au",
    "DROP TRIGGER IF EXISTS search_text_ad",
    "DROP TRIGGER IF EXISTS search_text_ai",
    "DROP TABLE IF EXISTS search_fts",
]
# tsv (weighted, with positions) ranks; tsm, its stripped copy on the narrow documents row, matches:
# small enough to stay inline and uncompressed, so testing it row by row is cheap when a broad query
# walks doc_id backwards. A trigger keeps tsm in step, as FTS5's triggers do on SQLite.
POSTGRES_UP = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    """ALTER TABLE search_text ADD COLUMN tsv tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('simple'::regconfig, head), 'A') || setweight(to_tsvector('simple'::regconfig, body), 'B')
    ) STORED""",
    "ALTER TABLE search_documents ADD COLUMN tsm tsvector",
    "CREATE INDEX ix_search_documents_tsm ON search_documents USING gin (tsm)",
    "CREATE INDEX ix_search_text_title_trgm ON search_text USING gin (title gin_trgm_ops)",
    """CREATE FUNCTION search_text_to_documents() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE search_documents SET tsm = strip(NEW.tsv) WHERE doc_id = NEW.doc_id;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER search_text_tsm AFTER INSERT OR UPDATE OF head, body ON search_text
        FOR EACH ROW EXECUTE FUNCTION search_text_to_documents()""",
]
# The pg_trgm extension stays: other schemas or later migrations may use it.
POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS search_text_tsm ON search_text",
    "DROP FUNCTION IF EXISTS search_text_to_documents()",
    "DROP INDEX IF EXISTS ix_search_text_title_trgm",
    "DROP INDEX IF EXISTS ix_search_documents_tsm",
]


def upgrade() -> None:
    op.create_table('search_documents',
    sa.Column('doc_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('product_id', sa.String(length=40), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('owner_org_id', sa.String(length=40), nullable=False),
    sa.Column('created_us', sa.BigInteger(), nullable=False),
    sa.Column('facets', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_search_documents_product_id_products')),
    sa.PrimaryKeyConstraint('doc_id', name=op.f('pk_search_documents')),
    sa.UniqueConstraint('product_id', name=op.f('uq_search_documents_product_id'))
    )
    with op.batch_alter_table('search_documents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_search_documents_owner_org_id'), ['owner_org_id'], unique=False)
        batch_op.create_index('ix_search_documents_status_created_us_product_id', ['status', 'created_us', 'product_id'], unique=False)

    op.create_table('search_text',
    sa.Column('doc_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('title', sa.String(length=300), nullable=False),
    sa.Column('head', sa.Text(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['doc_id'], ['search_documents.doc_id'], name=op.f('fk_search_text_doc_id_search_documents')),
    sa.PrimaryKeyConstraint('doc_id', name=op.f('pk_search_text'))
    )
    op.create_table('search_facet_counts',
    sa.Column('facet', sa.String(length=32), nullable=False),
    sa.Column('value', sa.String(length=200), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('facet', 'value', name=op.f('pk_search_facet_counts'))
    )
    for statement in SQLITE_UP if op.get_bind().dialect.name == 'sqlite' else POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    for statement in SQLITE_DOWN if op.get_bind().dialect.name == 'sqlite' else POSTGRES_DOWN:
        op.execute(statement)
    op.drop_table('search_facet_counts')
    op.drop_table('search_text')
    with op.batch_alter_table('search_documents', schema=None) as batch_op:
        batch_op.drop_index('ix_search_documents_status_created_us_product_id')
        batch_op.drop_index(batch_op.f('ix_search_documents_owner_org_id'))

    op.drop_table('search_documents')
