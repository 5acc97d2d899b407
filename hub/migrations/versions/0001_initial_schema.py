"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 06:05:34.994288
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

import hub.store

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cursors',
    sa.Column('connection', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('object', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('connection', 'object')
    )
    op.create_table('leads',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('first_name', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('last_name', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('phone', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('company', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('domain', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('country', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status_since', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('score', sa.Float(), nullable=True),
    sa.Column('value', sa.Float(), nullable=True),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('probability', sa.Float(), nullable=True),
    sa.Column('expected_close', sa.Date(), nullable=True),
    sa.Column('next_action', sa.Date(), nullable=True),
    sa.Column('loss_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('rejection_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('custom', sa.JSON(), nullable=False),
    sa.Column('created_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_leads_domain'), ['domain'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_email'), ['email'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_owner'), ['owner'], unique=False)
        batch_op.create_index(batch_op.f('ix_leads_status'), ['status'], unique=False)

    op.create_table('runs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('connection', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('started_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('counts', sa.JSON(), nullable=False),
    sa.Column('api_calls', sa.Integer(), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_runs_connection'), ['connection'], unique=False)

    op.create_table('conflicts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('connection', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('field', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('hub_value', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('remote_value', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('resolved_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('conflicts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_conflicts_lead_id'), ['lead_id'], unique=False)

    op.create_table('links',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('connection', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('object', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('remote_id', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('remote_modified', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('synced_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('synced', sa.JSON(), nullable=False),
    sa.Column('deleted_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('connection', 'object', 'remote_id', name='uq_links_remote'),
    sa.UniqueConstraint('lead_id', 'connection', 'object', name='uq_links_lead')
    )
    op.create_table('outbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('connection', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('object', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('lead_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('remote_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('fields', sa.JSON(), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('created_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('updated_at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_outbox_lead_id'), ['lead_id'], unique=False)
        batch_op.create_index('ix_outbox_pending', ['connection', 'state'], unique=False)

    op.create_table('record_issues',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=True),
    sa.Column('connection', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('remote_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('lead_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('message', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('record_issues', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_record_issues_run_id'), ['run_id'], unique=False)

    op.create_table('status_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lead_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('from_status', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('to_status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', hub.store.UTCDateTime(timezone=True), nullable=True),
    sa.Column('by', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('connection', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('incomplete', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['lead_id'], ['leads.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('status_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_status_history_lead_id'), ['lead_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('status_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_status_history_lead_id'))

    op.drop_table('status_history')
    with op.batch_alter_table('record_issues', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_record_issues_run_id'))

    op.drop_table('record_issues')
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_pending')
        batch_op.drop_index(batch_op.f('ix_outbox_lead_id'))

    op.drop_table('outbox')
    op.drop_table('links')
    with op.batch_alter_table('conflicts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_conflicts_lead_id'))

    op.drop_table('conflicts')
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs_connection'))

    op.drop_table('runs')
    with op.batch_alter_table('leads', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_leads_status'))
        batch_op.drop_index(batch_op.f('ix_leads_owner'))
        batch_op.drop_index(batch_op.f('ix_leads_email'))
        batch_op.drop_index(batch_op.f('ix_leads_domain'))

    op.drop_table('leads')
    op.drop_table('cursors')
