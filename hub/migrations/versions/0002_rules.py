"""rule engine: actions, tasks, flags, relations, per-lead timers, run log

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 06:47:50.179048
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import hub.store

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('rule_runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('now', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('started_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('config_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('errors', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('lead_flags',
    sa.Column('lead_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('flag', sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
    sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('note', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('since', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('lead_id', 'flag')
    )
    op.create_table('lead_relations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('other_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('relation', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
    sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.ForeignKeyConstraint(['other_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('lead_id', 'other_id', 'relation', name='uq_lead_relations')
    )
    with op.batch_alter_table('lead_relations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_lead_relations_lead_id'), ['lead_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_lead_relations_other_id'), ['other_id'], unique=False)

    op.create_table('rule_actions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('lead_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('inputs', sa.JSON(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('applied', sa.Boolean(), nullable=False),
    sa.Column('outcome', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.ForeignKeyConstraint(['run_id'], ['rule_runs.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('rule', 'lead_id', 'key', name='uq_rule_actions_key')
    )
    with op.batch_alter_table('rule_actions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rule_actions_lead_id'), ['lead_id'], unique=False)

    op.create_table('rule_leads',
    sa.Column('lead_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('seen_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('due_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('timers', sa.JSON(), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('lead_id')
    )
    with op.batch_alter_table('rule_leads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_rule_leads_due_at'), ['due_at'], unique=False)

    op.create_table('tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=30), nullable=False),
    sa.Column('assignee', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('due_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('closed_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_tasks_assignee'), ['assignee'], unique=False)
        batch_op.create_index(batch_op.f('ix_tasks_lead_id'), ['lead_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tasks_lead_id'))
        batch_op.drop_index(batch_op.f('ix_tasks_assignee'))

    op.drop_table('tasks')
    with op.batch_alter_table('rule_leads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rule_leads_due_at'))

    op.drop_table('rule_leads')
    with op.batch_alter_table('rule_actions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_rule_actions_lead_id'))

    op.drop_table('rule_actions')
    with op.batch_alter_table('lead_relations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lead_relations_other_id'))
        batch_op.drop_index(batch_op.f('ix_lead_relations_lead_id'))

    op.drop_table('lead_relations')
    op.drop_table('lead_flags')
    op.drop_table('rule_runs')
