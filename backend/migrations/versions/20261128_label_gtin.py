"""labels: the product's GS1 GTIN (14 digits) on label applications, carried onto their batches, so a
label also resolves at the GS1 Digital Link /01/{gtin}/21/{code}

Revision ID: 7d3a9e61c0b4
Revises: 2f6b8c0d9a17
Create Date: 2026-11-28 02:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '7d3a9e61c0b4'
down_revision = '2f6b8c0d9a17'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('label_applications', 'label_batches'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('gtin', sa.String(length=14), nullable=True))
            batch_op.create_check_constraint(batch_op.f(f'ck_{table}_gtin_14_digits'),
                                             'gtin IS NULL OR length(gtin) = 14')


def downgrade() -> None:
    for table in ('label_batches', 'label_applications'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'ck_{table}_gtin_14_digits'), type_='check')
            batch_op.drop_column('gtin')
