"""scans: scan_events keeps only the indexes its readers use (each costs every scan's insert). The
label_id and operator indexes (nothing reads scans by label or operator) and the operator foreign
key (a check and a row lock on the operator per inserted scan; the id is copied from the label
view, like label_id, which never had one) are dropped, and the client index becomes a partial
index of the never-issued codes' scans, the only rows the fake-burst rule reads by client.

Revision ID: 9c4e1b7d2f60
Revises: 284ac7391286
Create Date: 2026-12-05 06:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '9c4e1b7d2f60'
down_revision = '284ac7391286'
branch_labels = None
depends_on = None

_UNISSUED = sa.text("label_id IS NULL")


def upgrade() -> None:
    with op.batch_alter_table('scan_events', schema=None) as batch_op:
        batch_op.drop_constraint('fk_scan_events_operator_id_operators', type_='foreignkey')
        batch_op.drop_index('ix_scan_events_label_id')
        batch_op.drop_index('ix_scan_events_operator_scanned_at')
        batch_op.drop_index('ix_scan_events_client')
        batch_op.create_index('ix_scan_events_unissued_client', ['client', 'scanned_at'], unique=False,
                              postgresql_where=_UNISSUED, sqlite_where=_UNISSUED)


def downgrade() -> None:
    with op.batch_alter_table('scan_events', schema=None) as batch_op:
        batch_op.drop_index('ix_scan_events_unissued_client')
        batch_op.create_index('ix_scan_events_client', ['client'], unique=False)
        batch_op.create_index('ix_scan_events_label_id', ['label_id'], unique=False)
        batch_op.create_index('ix_scan_events_operator_scanned_at', ['operator_id', 'scanned_at'], unique=False)
        batch_op.create_foreign_key('fk_scan_events_operator_id_operators', 'operators', ['operator_id'], ['id'])
