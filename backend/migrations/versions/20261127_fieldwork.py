"""fieldwork: inspectors' check-ins, findings (with label codes), photos and tasks

Revision ID: f25e1b348c4c
Revises: 33089e045f58
Create Date: 2026-11-27 22:59:40.008826
"""
from alembic import op
import sqlalchemy as sa


revision = 'f25e1b348c4c'
down_revision = '33089e045f58'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('fieldwork_tasks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('assignee_id', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('target_kind', sa.String(length=16), nullable=False),
    sa.Column('plot_id', sa.Integer(), nullable=True),
    sa.Column('operator_id', sa.Integer(), nullable=True),
    sa.Column('premises', sa.String(length=300), nullable=True),
    sa.Column('due_date', sa.Date(), nullable=False),
    sa.Column('instructions', sa.Text(), nullable=True),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(target_kind = 'plot' AND plot_id IS NOT NULL AND operator_id IS NULL) OR (target_kind <> 'plot' AND operator_id IS NOT NULL AND plot_id IS NULL)", name=op.f('ck_fieldwork_tasks_target_shape')),
    sa.CheckConstraint("state IN ('open', 'done', 'cancelled')", name=op.f('ck_fieldwork_tasks_state')),
    sa.CheckConstraint("target_kind IN ('plot', 'operator', 'warehouse', 'shop')", name=op.f('ck_fieldwork_tasks_target_kind')),
    sa.ForeignKeyConstraint(['assignee_id'], ['users.id'], name=op.f('fk_fieldwork_tasks_assignee_id_users')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_fieldwork_tasks_created_by_id_users')),
    sa.ForeignKeyConstraint(['operator_id'], ['operators.id'], name=op.f('fk_fieldwork_tasks_operator_id_operators')),
    sa.ForeignKeyConstraint(['plot_id'], ['plots.id'], name=op.f('fk_fieldwork_tasks_plot_id_plots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fieldwork_tasks'))
    )
    with op.batch_alter_table('fieldwork_tasks', schema=None) as batch_op:
        batch_op.create_index('ix_fieldwork_tasks_assignee_state', ['assignee_id', 'state'], unique=False)
        batch_op.create_index(batch_op.f('ix_fieldwork_tasks_operator_id'), ['operator_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_fieldwork_tasks_plot_id'), ['plot_id'], unique=False)

    op.create_table('fieldwork_checkins',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('content_sha256', sa.String(length=64), nullable=False),
    sa.Column('inspector_id', sa.Integer(), nullable=False),
    sa.Column('replaces_id', sa.Integer(), nullable=True),
    sa.Column('task_id', sa.Integer(), nullable=True),
    sa.Column('target_kind', sa.String(length=16), nullable=False),
    sa.Column('plot_id', sa.Integer(), nullable=True),
    sa.Column('operator_id', sa.Integer(), nullable=True),
    sa.Column('premises', sa.String(length=300), nullable=True),
    sa.Column('captured_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lat', sa.Float(), nullable=False),
    sa.Column('lon', sa.Float(), nullable=False),
    sa.Column('accuracy_m', sa.Float(), nullable=False),
    sa.Column('altitude_m', sa.Float(), nullable=True),
    sa.Column('checklist', sa.String(length=40), nullable=False),
    sa.Column('checklist_version', sa.Integer(), nullable=False),
    sa.Column('answers', sa.JSON(), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('result', sa.String(length=16), nullable=False),
    sa.Column('photos_expected', sa.Integer(), nullable=False),
    sa.Column('distance_m', sa.Float(), nullable=True),
    sa.Column('flags', sa.JSON(), nullable=False),
    sa.Column('flag_count', sa.Integer(), nullable=False),
    sa.Column('review_state', sa.String(length=16), nullable=False),
    sa.Column('review_note', sa.Text(), nullable=True),
    sa.Column('reviewed_by_id', sa.Integer(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("(target_kind = 'plot' AND plot_id IS NOT NULL AND operator_id IS NULL) OR (target_kind <> 'plot' AND operator_id IS NOT NULL AND plot_id IS NULL)", name=op.f('ck_fieldwork_checkins_target_shape')),
    sa.CheckConstraint("result IN ('pass', 'fail', 'follow_up')", name=op.f('ck_fieldwork_checkins_result')),
    sa.CheckConstraint("review_state IN ('new', 'approved', 'has_issues', 'rejected')", name=op.f('ck_fieldwork_checkins_review_state')),
    sa.CheckConstraint("target_kind IN ('plot', 'operator', 'warehouse', 'shop')", name=op.f('ck_fieldwork_checkins_target_kind')),
    sa.CheckConstraint('accuracy_m >= 0', name=op.f('ck_fieldwork_checkins_accuracy')),
    sa.CheckConstraint('lat BETWEEN -90 AND 90 AND lon BETWEEN -180 AND 180', name=op.f('ck_fieldwork_checkins_coordinates')),
    sa.CheckConstraint('photos_expected >= 0', name=op.f('ck_fieldwork_checkins_photos_expected')),
    sa.ForeignKeyConstraint(['inspector_id'], ['users.id'], name=op.f('fk_fieldwork_checkins_inspector_id_users')),
    sa.ForeignKeyConstraint(['operator_id'], ['operators.id'], name=op.f('fk_fieldwork_checkins_operator_id_operators')),
    sa.ForeignKeyConstraint(['plot_id'], ['plots.id'], name=op.f('fk_fieldwork_checkins_plot_id_plots')),
    sa.ForeignKeyConstraint(['replaces_id'], ['fieldwork_checkins.id'], name=op.f('fk_fieldwork_checkins_replaces_id_fieldwork_checkins')),
    sa.ForeignKeyConstraint(['reviewed_by_id'], ['users.id'], name=op.f('fk_fieldwork_checkins_reviewed_by_id_users')),
    sa.ForeignKeyConstraint(['task_id'], ['fieldwork_tasks.id'], name=op.f('fk_fieldwork_checkins_task_id_fieldwork_tasks')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fieldwork_checkins')),
    sa.UniqueConstraint('replaces_id', name=op.f('uq_fieldwork_checkins_replaces_id')),
    sa.UniqueConstraint('uuid', name=op.f('uq_fieldwork_checkins_uuid'))
    )
    with op.batch_alter_table('fieldwork_checkins', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fieldwork_checkins_captured_at'), ['captured_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_fieldwork_checkins_flag_count'), ['flag_count'], unique=False)
        batch_op.create_index('ix_fieldwork_checkins_inspector_captured', ['inspector_id', 'captured_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_fieldwork_checkins_operator_id'), ['operator_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_fieldwork_checkins_plot_id'), ['plot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_fieldwork_checkins_review_state'), ['review_state'], unique=False)
        batch_op.create_index(batch_op.f('ix_fieldwork_checkins_task_id'), ['task_id'], unique=False)

    op.create_table('fieldwork_findings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('checkin_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('plot_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("kind IN ('counterfeit_labels', 'label_misuse', 'plot_not_planted', 'storage_problem', 'other')", name=op.f('ck_fieldwork_findings_kind')),
    sa.ForeignKeyConstraint(['checkin_id'], ['fieldwork_checkins.id'], name=op.f('fk_fieldwork_findings_checkin_id_fieldwork_checkins'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['plot_id'], ['plots.id'], name=op.f('fk_fieldwork_findings_plot_id_plots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fieldwork_findings')),
    sa.UniqueConstraint('checkin_id', 'position', name='uq_fieldwork_findings_checkin_position')
    )
    with op.batch_alter_table('fieldwork_findings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fieldwork_findings_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_fieldwork_findings_plot_id'), ['plot_id'], unique=False)

    op.create_table('fieldwork_photos',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('checkin_uuid', sa.String(length=36), nullable=False),
    sa.Column('checkin_id', sa.Integer(), nullable=True),
    sa.Column('uploaded_by_id', sa.Integer(), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('format', sa.String(length=8), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('original_key', sa.String(length=200), nullable=False),
    sa.Column('jpeg_key', sa.String(length=200), nullable=False),
    sa.Column('thumb_key', sa.String(length=200), nullable=False),
    sa.Column('exif_taken_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('exif_lat', sa.Float(), nullable=True),
    sa.Column('exif_lon', sa.Float(), nullable=True),
    sa.Column('flags', sa.JSON(), nullable=False),
    sa.CheckConstraint('size_bytes > 0 AND width > 0 AND height > 0', name=op.f('ck_fieldwork_photos_dimensions')),
    sa.ForeignKeyConstraint(['checkin_id'], ['fieldwork_checkins.id'], name=op.f('fk_fieldwork_photos_checkin_id_fieldwork_checkins')),
    sa.ForeignKeyConstraint(['uploaded_by_id'], ['users.id'], name=op.f('fk_fieldwork_photos_uploaded_by_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fieldwork_photos')),
    sa.UniqueConstraint('uuid', name=op.f('uq_fieldwork_photos_uuid'))
    )
    with op.batch_alter_table('fieldwork_photos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fieldwork_photos_checkin_id'), ['checkin_id'], unique=False)
        batch_op.create_index('ix_fieldwork_photos_checkin_uuid_uploader', ['checkin_uuid', 'uploaded_by_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_fieldwork_photos_uploaded_by_id'), ['uploaded_by_id'], unique=False)

    op.create_table('fieldwork_finding_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('finding_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['finding_id'], ['fieldwork_findings.id'], name=op.f('fk_fieldwork_finding_codes_finding_id_fieldwork_findings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fieldwork_finding_codes')),
    sa.UniqueConstraint('finding_id', 'code', name='uq_fieldwork_finding_codes_finding_code')
    )
    with op.batch_alter_table('fieldwork_finding_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_fieldwork_finding_codes_code'), ['code'], unique=False)


def downgrade() -> None:
    # Indexes and constraints go with their tables.
    for table in ("fieldwork_finding_codes", "fieldwork_photos", "fieldwork_findings", "fieldwork_checkins", "fieldwork_tasks"):
        op.drop_table(table)
