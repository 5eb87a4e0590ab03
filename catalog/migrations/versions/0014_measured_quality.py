"""measured quality: each release's quality report, the provider's thresholds, the product's scores

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 12:15:00

Releases published before this revision have no report (``quality`` stays null): their files
were checked against the dictionary, not profiled. Republishing is not possible (releases are
immutable); a new release is profiled.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('quality', JSON, nullable=True))
        batch_op.add_column(sa.Column('quality_thresholds', JSON, nullable=True))
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.add_column(sa.Column('measured_quality', JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_column('measured_quality')
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.drop_column('quality_thresholds')
        batch_op.drop_column('quality')
