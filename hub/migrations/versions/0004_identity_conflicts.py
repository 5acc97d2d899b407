"""multi-CRM sync: match keys and field provenance on leads, outbox reasons, merge tombstones

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 09:10:00
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email_key', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True))
        batch_op.add_column(sa.Column('phone_key', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True))
        batch_op.add_column(sa.Column('name_key', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=True))
        batch_op.add_column(sa.Column('provenance', sa.JSON(), nullable=False, server_default='{}'))
        batch_op.create_index(batch_op.f('ix_leads_email_key'), ['email_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_phone_key'), ['phone_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_name_key'), ['name_key'], unique=False)
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('merged_into', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True))
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reasons', sa.JSON(), nullable=False, server_default='{}'))
    # existing leads get their keys on their next write; `leadhub backfill` recomputes them all


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_column('reasons')
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.drop_column('merged_into')
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leads_name_key'))
        batch_op.drop_index(batch_op.f('ix_leads_phone_key'))
        batch_op.drop_index(batch_op.f('ix_leads_email_key'))
        batch_op.drop_column('provenance')
        batch_op.drop_column('name_key')
        batch_op.drop_column('phone_key')
        batch_op.drop_column('email_key')
