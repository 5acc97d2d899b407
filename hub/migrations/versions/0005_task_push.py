"""task push: the CRM a task went to, its id there, and the push's books

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 12:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import hub.store

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('connection', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True))
        batch_op.add_column(sa.Column('remote_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
        batch_op.add_column(sa.Column('pushed_at', hub.store.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('push_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('push_attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_index('ix_tasks_unpushed', ['state', 'remote_id'], unique=False)
    # tasks created before this revision are open and unpushed: the next sync pushes them


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_unpushed')
        batch_op.drop_column('push_attempts')
        batch_op.drop_column('push_error')
        batch_op.drop_column('pushed_at')
        batch_op.drop_column('remote_id')
        batch_op.drop_column('connection')
