"""CRM merges: what became of each merge request the dedup rule left (rules.dedup.remote)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 12:00:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import hub.store

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('dedup_merge_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('updated_at', hub.store.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_dedup_merge_requests_open', ['connection', 'state'], unique=False)
    # requests written before this revision stay 'requested': the next push of their connection carries them out


def downgrade() -> None:
    with op.batch_alter_table('dedup_merge_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_dedup_merge_requests_open')
        batch_op.drop_column('updated_at')
        batch_op.drop_column('message')
