"""scans: the durable scan log (scan_events) and scan fraud alerts (scan_alerts)

Revision ID: 5ca7e0b1d2a4
Revises: 3807dfb9fbe1
Create Date: 2026-11-28 00:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '5ca7e0b1d2a4'
down_revision = '3807dfb9fbe1'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('scan_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('event_id', sa.String(length=32), nullable=False),
    sa.Column('scanned_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=False),
    sa.Column('label_id', sa.Integer(), nullable=True),
    sa.Column('operator_id', sa.Integer(), nullable=True),
    sa.Column('town_id', sa.Integer(), nullable=True),
    sa.Column('verdict', sa.String(length=12), nullable=False),
    sa.Column('device', sa.String(length=32), nullable=False),
    sa.Column('client', sa.String(length=32), nullable=False),
    sa.Column('lat', sa.Float(), nullable=True),
    sa.Column('lon', sa.Float(), nullable=True),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("source IN ('stream', 'direct')", name=op.f('ck_scan_events_source')),
    sa.CheckConstraint("verdict IN ('genuine', 'repeat', 'warn', 'inactive', 'voided', 'lost', 'stolen', 'unknown')", name=op.f('ck_scan_events_verdict')),
    sa.ForeignKeyConstraint(['operator_id'], ['operators.id'], name=op.f('fk_scan_events_operator_id_operators')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scan_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_scan_events_event_id'))
    )
    op.create_index('ix_scan_events_code_scanned_at', 'scan_events', ['code', 'scanned_at'], unique=False)
    op.create_index('ix_scan_events_operator_scanned_at', 'scan_events', ['operator_id', 'scanned_at'], unique=False)
    op.create_index(op.f('ix_scan_events_client'), 'scan_events', ['client'], unique=False)
    op.create_index(op.f('ix_scan_events_label_id'), 'scan_events', ['label_id'], unique=False)
    op.create_table('scan_alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=24), nullable=False),
    sa.Column('subject', sa.String(length=48), nullable=False),
    sa.Column('code', sa.String(length=16), nullable=True),
    sa.Column('label_id', sa.Integer(), nullable=True),
    sa.Column('operator_id', sa.Integer(), nullable=True),
    sa.Column('state', sa.String(length=12), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('first_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen', sa.DateTime(timezone=True), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('acknowledged_by', sa.Integer(), nullable=True),
    sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resolved_by', sa.Integer(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("rule IN ('too_many_scans', 'too_many_devices', 'impossible_travel', 'bad_state', 'reported_code', 'fake_burst')", name=op.f('ck_scan_alerts_rule')),
    sa.CheckConstraint("state IN ('open', 'acknowledged', 'resolved')", name=op.f('ck_scan_alerts_state')),
    sa.ForeignKeyConstraint(['acknowledged_by'], ['users.id'], name=op.f('fk_scan_alerts_acknowledged_by_users')),
    sa.ForeignKeyConstraint(['operator_id'], ['operators.id'], name=op.f('fk_scan_alerts_operator_id_operators')),
    sa.ForeignKeyConstraint(['resolved_by'], ['users.id'], name=op.f('fk_scan_alerts_resolved_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scan_alerts'))
    )
    op.create_index('uq_scan_alerts_open', 'scan_alerts', ['rule', 'subject'], unique=True,
                    postgresql_where=sa.text("state <> 'resolved'"), sqlite_where=sa.text("state <> 'resolved'"))
    op.create_index(op.f('ix_scan_alerts_code'), 'scan_alerts', ['code'], unique=False)
    op.create_index(op.f('ix_scan_alerts_operator_id'), 'scan_alerts', ['operator_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_scan_alerts_operator_id'), table_name='scan_alerts')
    op.drop_index(op.f('ix_scan_alerts_code'), table_name='scan_alerts')
    op.drop_index('uq_scan_alerts_open', table_name='scan_alerts')
    op.drop_table('scan_alerts')
    op.drop_index(op.f('ix_scan_events_label_id'), table_name='scan_events')
    op.drop_index(op.f('ix_scan_events_client'), table_name='scan_events')
    op.drop_index('ix_scan_events_operator_scanned_at', table_name='scan_events')
    op.drop_index('ix_scan_events_code_scanned_at', table_name='scan_events')
    op.drop_table('scan_events')
