"""labels: the scratch-off PIN's first verification on each label (pin_verified_at, pin_device) and the
correct verifications after it (pin_repeats)

Revision ID: c4e8a7d15b62
Revises: 9b1f4c2d7e30
Create Date: 2026-11-28 02:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = 'c4e8a7d15b62'
down_revision = '9b1f4c2d7e30'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.add_column(sa.Column('pin_verified_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('pin_device', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('pin_repeats', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_check_constraint(batch_op.f('ck_labels_pin_repeats_nonnegative'), 'pin_repeats >= 0')


def downgrade() -> None:
    with op.batch_alter_table('labels', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_labels_pin_repeats_nonnegative'), type_='check')
        batch_op.drop_column('pin_repeats')
        batch_op.drop_column('pin_device')
        batch_op.drop_column('pin_verified_at')
