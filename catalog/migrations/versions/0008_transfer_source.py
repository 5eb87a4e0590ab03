"""transfers name the charge they are paid out of, instead of the sender inferring it from the key

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29 15:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('source_charge_id', sa.String(length=80), nullable=True))
    # A split (key split:{payment}:{org}) was always paid out of its payment's charge; a
    # re-payment after a won dispute out of the balance.
    op.execute(
        "UPDATE transfers SET source_charge_id = "
        "(SELECT payments.charge_id FROM payments WHERE payments.id = transfers.payment_id) "
        "WHERE key = 'split:' || payment_id || ':' || org_id"
    )


def downgrade() -> None:
    with op.batch_alter_table('transfers', schema=None) as batch_op:
        batch_op.drop_column('source_charge_id')
