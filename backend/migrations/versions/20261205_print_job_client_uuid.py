"""labels: a print request may carry the client's UUID (client_uuid, unique): its retry answers
the job it made instead of queueing the range a second time

Revision ID: 3e8a5f0c6b21
Revises: 9c4e1b7d2f60
Create Date: 2026-12-05 21:20:00
"""
from alembic import op
import sqlalchemy as sa


revision = '3e8a5f0c6b21'
down_revision = '9c4e1b7d2f60'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('label_print_jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('client_uuid', sa.String(length=36), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_label_print_jobs_client_uuid'), ['client_uuid'])


def downgrade() -> None:
    with op.batch_alter_table('label_print_jobs', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_label_print_jobs_client_uuid'), type_='unique')
        batch_op.drop_column('client_uuid')
