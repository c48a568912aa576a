"""chain: plausibility alerts are reviewed like scan alerts: a state (open, acknowledged,
resolved; existing alerts are open), a note, and who acknowledged and resolved them when

Revision ID: 7d2c9e4a1f53
Revises: 3e8a5f0c6b21
Create Date: 2026-12-05 22:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '7d2c9e4a1f53'
down_revision = '3e8a5f0c6b21'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('chain_alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state', sa.String(length=12), server_default='open', nullable=False))
        batch_op.add_column(sa.Column('note', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('acknowledged_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('acknowledged_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resolved_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('resolved_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_check_constraint(batch_op.f('ck_chain_alerts_state'),
                                         "state IN ('open', 'acknowledged', 'resolved')")
        batch_op.create_foreign_key(batch_op.f('fk_chain_alerts_acknowledged_by_users'), 'users',
                                    ['acknowledged_by'], ['id'])
        batch_op.create_foreign_key(batch_op.f('fk_chain_alerts_resolved_by_users'), 'users', ['resolved_by'], ['id'])
        batch_op.create_index(batch_op.f('ix_chain_alerts_state'), ['state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('chain_alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chain_alerts_state'))
        batch_op.drop_constraint(batch_op.f('fk_chain_alerts_resolved_by_users'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_chain_alerts_acknowledged_by_users'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('ck_chain_alerts_state'), type_='check')
        for column in ('resolved_at', 'resolved_by', 'acknowledged_at', 'acknowledged_by', 'note', 'state'):
            batch_op.drop_column(column)
