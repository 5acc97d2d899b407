"""task close: a task closed in the hub after it was pushed is closed in its CRM, and the books of that

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 12:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import hub.store

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('remote_closed_at', hub.store.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('close_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_index('ix_tasks_unclosed', ['connection', 'remote_closed_at'], unique=False)
    # tasks pushed and closed before this revision have no remote_closed_at: the next push of their
    # connection closes them in the CRM (closing is idempotent, so one the CRM already closed is harmless)


def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_unclosed')
        batch_op.drop_column('close_error')
        batch_op.drop_column('remote_closed_at')
