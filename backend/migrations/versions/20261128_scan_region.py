"""scans: the client's region (an adcode named by the trusted proxy's SCAN_REGION_HEADER) on each scan
event, so the impossible-travel rule can place scans without a phone location

Revision ID: 2f6b8c0d9a17
Revises: c4e8a7d15b62
Create Date: 2026-11-28 02:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '2f6b8c0d9a17'
down_revision = 'c4e8a7d15b62'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('scan_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('region', sa.String(length=6), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('scan_events', schema=None) as batch_op:
        batch_op.drop_column('region')
