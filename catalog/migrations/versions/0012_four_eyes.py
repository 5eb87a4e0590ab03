"""four eyes on review: who decided which track of an application; review conditions on licences

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 06:00:00

``review_deciders`` remembers, per application, the one track each person decided, through every
round. ``licences.conditions`` carries the conditions of ``approve_with_conditions`` decisions;
licences issued before this revision had them only on their application's tracks and start empty.
"""

from __future__ import annotations

import advanced_alchemy
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('review_deciders',
    sa.Column('application_id', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.String(length=40), nullable=False),
    sa.Column('track', sa.String(length=16), nullable=False),
    sa.Column('created_at', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], name=op.f('fk_review_deciders_application_id_applications')),
    sa.PrimaryKeyConstraint('application_id', 'user_id', name=op.f('pk_review_deciders'))
    )
    with op.batch_alter_table('licences', schema=None) as batch_op:
        batch_op.add_column(sa.Column(
            'conditions', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
            nullable=False, server_default='[]',
        ))


def downgrade() -> None:
    with op.batch_alter_table('licences', schema=None) as batch_op:
        batch_op.drop_column('conditions')
    op.drop_table('review_deciders')
