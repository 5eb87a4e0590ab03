"""releases being published: when the current publish began, so a crashed one can be taken over

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 11:17:22.479165
"""

from __future__ import annotations

import advanced_alchemy.types
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('publishing_since', advanced_alchemy.types.datetime.DateTimeUTC(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table('releases', schema=None) as batch_op:
        batch_op.drop_column('publishing_since')
