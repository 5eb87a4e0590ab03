"""renewal: an application may hold several licences, each renewal linked to the licence it renews

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 09:00:00

``licences.application_id`` loses its uniqueness (an ordinary index stays): a renewal is a new
licence of the same application. ``licences.renews_licence_id`` links a renewal to the licence it
renews and is unique, so a licence is renewed at most once even when two requests race.
``applications.renewing_licence_id`` remembers which licence an application is renewing while the
review tracks the product now requires are reopened.

On SQLite dropping a constraint rebuilds the table, and a table other tables refer to cannot be
dropped while foreign keys are enforced — a pragma that changes only outside a transaction. So
there the rebuild runs in a transaction of its own with enforcement off, and refuses to commit if
it left a foreign key dangling that was not before. Downgrading refuses while a renewal exists
(two licences of one application cannot be unique again without deleting one).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with _foreign_keys_unenforced():
        with op.batch_alter_table('licences', schema=None) as batch_op:
            batch_op.drop_constraint('uq_licences_application_id', type_='unique')
            batch_op.create_index(batch_op.f('ix_licences_application_id'), ['application_id'], unique=False)
            batch_op.add_column(sa.Column('renews_licence_id', sa.String(length=40), nullable=True))
            batch_op.create_unique_constraint(batch_op.f('uq_licences_renews_licence_id'), ['renews_licence_id'])
            batch_op.create_foreign_key(
                batch_op.f('fk_licences_renews_licence_id_licences'), 'licences', ['renews_licence_id'], ['id']
            )
        with op.batch_alter_table('applications', schema=None) as batch_op:
            batch_op.add_column(sa.Column('renewing_licence_id', sa.String(length=40), nullable=True))
            batch_op.create_foreign_key(
                batch_op.f('fk_applications_renewing_licence_id_licences'), 'licences', ['renewing_licence_id'], ['id']
            )


def downgrade() -> None:
    renewals = op.get_bind().execute(sa.text('SELECT count(*) FROM licences WHERE renews_licence_id IS NOT NULL'))
    if renewals.scalar_one():
        raise RuntimeError('Licences renew others: an application may no longer hold only one licence.')
    with _foreign_keys_unenforced():
        with op.batch_alter_table('applications', schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f('fk_applications_renewing_licence_id_licences'), type_='foreignkey')
            batch_op.drop_column('renewing_licence_id')
        with op.batch_alter_table('licences', schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f('fk_licences_renews_licence_id_licences'), type_='foreignkey')
            batch_op.drop_constraint(batch_op.f('uq_licences_renews_licence_id'), type_='unique')
            batch_op.drop_column('renews_licence_id')
            batch_op.drop_index(batch_op.f('ix_licences_application_id'))
            batch_op.create_unique_constraint(batch_op.f('uq_licences_application_id'), ['application_id'])


@contextmanager
def _foreign_keys_unenforced() -> Iterator[None]:
    """On SQLite: end the migration's transaction, rebuild in one of our own with foreign keys not
    enforced, check them all, and begin again (the runner commits that one). Elsewhere: nothing."""
    bind = op.get_bind()
    if bind.dialect.name != 'sqlite':
        yield
        return
    run: Callable[[str], sa.CursorResult] = bind.exec_driver_sql
    if not bind.in_transaction():  # the statements below must not begin one of SQLAlchemy's own
        run('SELECT 1')
    run('COMMIT')
    run('PRAGMA foreign_keys=OFF')
    try:
        run('BEGIN IMMEDIATE')
        before = {tuple(row[:3]) for row in run('PRAGMA foreign_key_check').all()}
        yield
        broken = {tuple(row[:3]) for row in run('PRAGMA foreign_key_check').all()} - before
        if broken:
            raise RuntimeError(f'The rebuild would break foreign keys: {sorted(broken)[:5]}')
        run('COMMIT')
    except BaseException:
        run('ROLLBACK')
        raise
    finally:
        run('PRAGMA foreign_keys=ON')
        run('BEGIN')
