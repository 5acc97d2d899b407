"""routing and dedup: rotation, decisions, blocking keys, merge requests

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 06:48:26.935673
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import hub.store

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dedup_keys',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('lead_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.PrimaryKeyConstraint('key', 'lead_id')
    )
    with op.batch_alter_table('dedup_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dedup_keys_lead_id'), ['lead_id'], unique=False)

    op.create_table('routing_lock',
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    op.bulk_insert(sa.table('routing_lock', sa.column('name', sa.String), sa.column('seq', sa.Integer)),
                   [{'name': 'routing', 'seq': 0}])  # the row routing locks (rules.routing.router.lock)
    op.create_table('routing_pools',
    sa.Column('pool', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('level', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('pool')
    )
    op.create_table('routing_rotation',
    sa.Column('pool', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('vtime', sa.Float(), nullable=True),
    sa.Column('assigned', sa.Integer(), nullable=False),
    sa.Column('last_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('pool', 'email')
    )
    op.create_table('dedup_merge_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('survivor_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('merged_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('connection', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('object', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('survivor_remote_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('merged_remote_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['merged_id'], ['leads.id'], ),
    sa.ForeignKeyConstraint(['survivor_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('dedup_merge_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_dedup_merge_requests_merged_id'), ['merged_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_dedup_merge_requests_survivor_id'), ['survivor_id'], unique=False)

    op.create_table('routing_decisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('at', hub.store.UTCDateTime(timezone=True), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('strategy', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('pool', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('previous_owner', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('queue', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('rules', sa.JSON(), nullable=False),
    sa.Column('candidates', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('routing_decisions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_routing_decisions_lead_id'), ['lead_id'], unique=False)
        batch_op.create_index('ix_routing_decisions_owner_at', ['owner', 'at'], unique=False)
        batch_op.create_index('ix_routing_decisions_pool_at', ['pool', 'at'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('routing_decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_routing_decisions_pool_at')
        batch_op.drop_index('ix_routing_decisions_owner_at')
        batch_op.drop_index(batch_op.f('ix_routing_decisions_lead_id'))

    op.drop_table('routing_decisions')
    with op.batch_alter_table('dedup_merge_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dedup_merge_requests_survivor_id'))
        batch_op.drop_index(batch_op.f('ix_dedup_merge_requests_merged_id'))

    op.drop_table('dedup_merge_requests')
    op.drop_table('routing_rotation')
    op.drop_table('routing_pools')
    op.drop_table('routing_lock')
    with op.batch_alter_table('dedup_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dedup_keys_lead_id'))

    op.drop_table('dedup_keys')
