"""labels: a reprint made by requeueing a failed print job names that job (retry_of_id, unique)

Revision ID: 9b1f4c2d7e30
Revises: 5ca7e0b1d2a4
Create Date: 2026-11-28 01:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '9b1f4c2d7e30'
down_revision = '5ca7e0b1d2a4'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('label_print_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retry_of_id', sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_label_print_jobs_retry_of_id'), ['retry_of_id'])
        batch_op.create_foreign_key(batch_op.f('fk_label_print_jobs_retry_of_id_label_print_jobs'),
                                    'label_print_jobs', ['retry_of_id'], ['id'])


def downgrade() -> None:
    with op.batch_alter_table('label_print_jobs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_label_print_jobs_retry_of_id_label_print_jobs'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_label_print_jobs_retry_of_id'), type_='unique')
        batch_op.drop_column('retry_of_id')
