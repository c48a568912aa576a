"""scans: the GTIN a GS1 Digital Link named when it was not the label's (scan_events.wrong_gtin):
such a scan is a counterfeit attempt, counted per client and pattern, never on the code itself

Revision ID: 284ac7391286
Revises: 7d3a9e61c0b4
Create Date: 2026-11-28 02:45:00
"""
from alembic import op
import sqlalchemy as sa


revision = '284ac7391286'
down_revision = '7d3a9e61c0b4'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('scan_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('wrong_gtin', sa.String(length=14), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('scan_events', schema=None) as batch_op:
        batch_op.drop_column('wrong_gtin')
