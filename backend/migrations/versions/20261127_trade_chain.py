"""trade chain: seedling sales, fruit trades and their corrections, plausibility alerts, plot
findings, warehouses, peel lots (their fruit, sources, moves and corrections) and sales

Revision ID: 33089e045f58
Revises: 84ba6519d03b
Create Date: 2026-11-27 22:54:02.210368
"""
from alembic import op
import sqlalchemy as sa


revision = '33089e045f58'
down_revision = '84ba6519d03b'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('chain_warehouses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('operator_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('address', sa.String(length=300), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['operator_id'], ['operators.id'], name=op.f('fk_chain_warehouses_operator_id_operators')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_warehouses')),
    sa.UniqueConstraint('operator_id', 'name', name='uq_chain_warehouses_operator_name')
    )
    with op.batch_alter_table('chain_warehouses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chain_warehouses_operator_id'), ['operator_id'], unique=False)

    op.create_table('chain_lots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_uuid', sa.String(length=36), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('operator_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('warehouse_id', sa.Integer(), nullable=True),
    sa.Column('stage', sa.String(length=12), nullable=False),
    sa.Column('season', sa.Integer(), nullable=False),
    sa.Column('harvest_date', sa.Date(), nullable=False),
    sa.Column('production_date', sa.Date(), nullable=False),
    sa.Column('input_kg', sa.Numeric(precision=12, scale=3), nullable=False),
    sa.Column('output_kg', sa.Numeric(precision=12, scale=3), nullable=False),
    sa.Column('recorded_by', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind = 'purchase' OR warehouse_id IS NOT NULL", name=op.f('ck_chain_lots_stored')),
    sa.CheckConstraint("kind IN ('production', 'split', 'merge', 'purchase')", name=op.f('ck_chain_lots_kind')),
    sa.CheckConstraint("stage IN ('gan_qing', 'wei_hong', 'da_hong')", name=op.f('ck_chain_lots_stage')),
    sa.CheckConstraint('input_kg > 0', name=op.f('ck_chain_lots_input_positive')),
    sa.CheckConstraint('output_kg > 0', name=op.f('ck_chain_lots_output_positive')),
    sa.CheckConstraint('production_date >= harvest_date', name=op.f('ck_chain_lots_produced_after_harvest')),
    sa.ForeignKeyConstraint(['operator_id'], ['operators.id'], name=op.f('fk_chain_lots_operator_id_operators')),
    sa.ForeignKeyConstraint(['recorded_by'], ['users.id'], name=op.f('fk_chain_lots_recorded_by_users')),
    sa.ForeignKeyConstraint(['warehouse_id'], ['chain_warehouses.id'], name=op.f('fk_chain_lots_warehouse_id_chain_warehouses')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_lots')),
    sa.UniqueConstraint('client_uuid', name=op.f('uq_chain_lots_client_uuid')),
    sa.UniqueConstraint('operator_id', 'code', name='uq_chain_lots_operator_code')
    )
    with op.batch_alter_table('chain_lots', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chain_lots_operator_id'), ['operator_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_lots_warehouse_id'), ['warehouse_id'], unique=False)

    op.create_table('chain_fruit_trades',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_uuid', sa.String(length=36), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('plot_id', sa.Integer(), nullable=False),
    sa.Column('grower_id', sa.Integer(), nullable=False),
    sa.Column('village_id', sa.Integer(), nullable=False),
    sa.Column('operator_id', sa.Integer(), nullable=False),
    sa.Column('trade_date', sa.Date(), nullable=False),
    sa.Column('stage', sa.String(length=12), nullable=False),
    sa.Column('season', sa.Integer(), nullable=False),
    sa.Column('weight_kg', sa.Numeric(precision=12, scale=3), nullable=False),
    sa.Column('price_per_kg', sa.Numeric(precision=10, scale=2), nullable=False),
    sa.Column('recorded_by', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("stage IN ('gan_qing', 'wei_hong', 'da_hong')", name=op.f('ck_chain_fruit_trades_stage')),
    sa.CheckConstraint('price_per_kg >= 0', name=op.f('ck_chain_fruit_trades_price_nonnegative')),
    sa.CheckConstraint('weight_kg > 0', name=op.f('ck_chain_fruit_trades_weight_positive')),
    sa.ForeignKeyConstraint(['grower_id'], ['growers.id'], name=op.f('fk_chain_fruit_trades_grower_id_growers')),
    sa.ForeignKeyConstraint(['operator_id'], ['operators.id'], name=op.f('fk_chain_fruit_trades_operator_id_operators')),
    sa.ForeignKeyConstraint(['plot_id'], ['plots.id'], name=op.f('fk_chain_fruit_trades_plot_id_plots')),
    sa.ForeignKeyConstraint(['recorded_by'], ['users.id'], name=op.f('fk_chain_fruit_trades_recorded_by_users')),
    sa.ForeignKeyConstraint(['village_id'], ['villages.id'], name=op.f('fk_chain_fruit_trades_village_id_villages')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_fruit_trades')),
    sa.UniqueConstraint('client_uuid', name=op.f('uq_chain_fruit_trades_client_uuid'))
    )
    with op.batch_alter_table('chain_fruit_trades', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chain_fruit_trades_grower_id'), ['grower_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_fruit_trades_operator_id'), ['operator_id'], unique=False)
        batch_op.create_index('ix_chain_fruit_trades_plot_season', ['plot_id', 'season'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_fruit_trades_village_id'), ['village_id'], unique=False)

    op.create_table('chain_lot_corrections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_uuid', sa.String(length=36), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['chain_lots.id'], name=op.f('fk_chain_lot_corrections_lot_id_chain_lots')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_chain_lot_corrections_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_lot_corrections')),
    sa.UniqueConstraint('client_uuid', name=op.f('uq_chain_lot_corrections_client_uuid')),
    sa.UniqueConstraint('lot_id', name=op.f('uq_chain_lot_corrections_lot_id'))
    )
    op.create_table('chain_lot_moves',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_uuid', sa.String(length=36), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('from_warehouse_id', sa.Integer(), nullable=True),
    sa.Column('to_warehouse_id', sa.Integer(), nullable=False),
    sa.Column('moved_on', sa.Date(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['from_warehouse_id'], ['chain_warehouses.id'], name=op.f('fk_chain_lot_moves_from_warehouse_id_chain_warehouses')),
    sa.ForeignKeyConstraint(['lot_id'], ['chain_lots.id'], name=op.f('fk_chain_lot_moves_lot_id_chain_lots')),
    sa.ForeignKeyConstraint(['to_warehouse_id'], ['chain_warehouses.id'], name=op.f('fk_chain_lot_moves_to_warehouse_id_chain_warehouses')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_chain_lot_moves_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_lot_moves')),
    sa.UniqueConstraint('client_uuid', name=op.f('uq_chain_lot_moves_client_uuid'))
    )
    with op.batch_alter_table('chain_lot_moves', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chain_lot_moves_lot_id'), ['lot_id'], unique=False)

    op.create_table('chain_lot_sources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('source_lot_id', sa.Integer(), nullable=False),
    sa.Column('kg', sa.Numeric(precision=12, scale=3), nullable=False),
    sa.CheckConstraint('kg > 0', name=op.f('ck_chain_lot_sources_kg_positive')),
    sa.CheckConstraint('lot_id > source_lot_id', name=op.f('ck_chain_lot_sources_older_source')),
    sa.ForeignKeyConstraint(['lot_id'], ['chain_lots.id'], name=op.f('fk_chain_lot_sources_lot_id_chain_lots')),
    sa.ForeignKeyConstraint(['source_lot_id'], ['chain_lots.id'], name=op.f('fk_chain_lot_sources_source_lot_id_chain_lots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_lot_sources')),
    sa.UniqueConstraint('lot_id', 'source_lot_id', name='uq_chain_lot_sources_lot_source')
    )
    with op.batch_alter_table('chain_lot_sources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chain_lot_sources_lot_id'), ['lot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_lot_sources_source_lot_id'), ['source_lot_id'], unique=False)

    op.create_table('chain_plot_findings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('plot_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('found_on', sa.Date(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('note', sa.String(length=500), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('unplanted', 'planted')", name=op.f('ck_chain_plot_findings_kind')),
    sa.ForeignKeyConstraint(['plot_id'], ['plots.id'], name=op.f('fk_chain_plot_findings_plot_id_plots')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_chain_plot_findings_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_plot_findings'))
    )
    with op.batch_alter_table('chain_plot_findings', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chain_plot_findings_plot_id'), ['plot_id'], unique=False)

    op.create_table('chain_sales',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_uuid', sa.String(length=36), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('seller_operator_id', sa.Integer(), nullable=False),
    sa.Column('sale_date', sa.Date(), nullable=False),
    sa.Column('kg', sa.Numeric(precision=12, scale=3), nullable=False),
    sa.Column('vintage_year', sa.Integer(), nullable=False),
    sa.Column('claimed_age_years', sa.Integer(), nullable=True),
    sa.Column('price_per_kg', sa.Numeric(precision=12, scale=2), nullable=True),
    sa.Column('buyer_kind', sa.String(length=12), nullable=False),
    sa.Column('buyer_operator_id', sa.Integer(), nullable=True),
    sa.Column('destination', sa.String(length=200), nullable=True),
    sa.Column('received_lot_id', sa.Integer(), nullable=True),
    sa.Column('recorded_by', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("(buyer_kind = 'operator') = (buyer_operator_id IS NOT NULL)", name=op.f('ck_chain_sales_buyer_operator')),
    sa.CheckConstraint("(buyer_kind = 'operator') = (received_lot_id IS NOT NULL)", name=op.f('ck_chain_sales_received_lot')),
    sa.CheckConstraint("buyer_kind IN ('operator', 'retail', 'export')", name=op.f('ck_chain_sales_buyer_kind')),
    sa.CheckConstraint('kg > 0', name=op.f('ck_chain_sales_kg_positive')),
    sa.CheckConstraint('price_per_kg IS NULL OR price_per_kg >= 0', name=op.f('ck_chain_sales_price_nonnegative')),
    sa.ForeignKeyConstraint(['buyer_operator_id'], ['operators.id'], name=op.f('fk_chain_sales_buyer_operator_id_operators')),
    sa.ForeignKeyConstraint(['lot_id'], ['chain_lots.id'], name=op.f('fk_chain_sales_lot_id_chain_lots')),
    sa.ForeignKeyConstraint(['received_lot_id'], ['chain_lots.id'], name=op.f('fk_chain_sales_received_lot_id_chain_lots')),
    sa.ForeignKeyConstraint(['recorded_by'], ['users.id'], name=op.f('fk_chain_sales_recorded_by_users')),
    sa.ForeignKeyConstraint(['seller_operator_id'], ['operators.id'], name=op.f('fk_chain_sales_seller_operator_id_operators')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_sales')),
    sa.UniqueConstraint('client_uuid', name=op.f('uq_chain_sales_client_uuid')),
    sa.UniqueConstraint('received_lot_id', name=op.f('uq_chain_sales_received_lot_id'))
    )
    with op.batch_alter_table('chain_sales', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chain_sales_buyer_operator_id'), ['buyer_operator_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_sales_lot_id'), ['lot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_sales_seller_operator_id'), ['seller_operator_id'], unique=False)

    op.create_table('chain_seedling_sales',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_uuid', sa.String(length=36), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('nursery_id', sa.Integer(), nullable=False),
    sa.Column('grower_id', sa.Integer(), nullable=False),
    sa.Column('plot_id', sa.Integer(), nullable=True),
    sa.Column('variety', sa.String(length=60), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('sale_date', sa.Date(), nullable=False),
    sa.Column('recorded_by', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('count > 0', name=op.f('ck_chain_seedling_sales_count_positive')),
    sa.ForeignKeyConstraint(['grower_id'], ['growers.id'], name=op.f('fk_chain_seedling_sales_grower_id_growers')),
    sa.ForeignKeyConstraint(['nursery_id'], ['nurseries.id'], name=op.f('fk_chain_seedling_sales_nursery_id_nurseries')),
    sa.ForeignKeyConstraint(['plot_id'], ['plots.id'], name=op.f('fk_chain_seedling_sales_plot_id_plots')),
    sa.ForeignKeyConstraint(['recorded_by'], ['users.id'], name=op.f('fk_chain_seedling_sales_recorded_by_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_seedling_sales')),
    sa.UniqueConstraint('client_uuid', name=op.f('uq_chain_seedling_sales_client_uuid'))
    )
    with op.batch_alter_table('chain_seedling_sales', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chain_seedling_sales_grower_id'), ['grower_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_seedling_sales_nursery_id'), ['nursery_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_seedling_sales_plot_id'), ['plot_id'], unique=False)

    op.create_table('chain_alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('plot_id', sa.Integer(), nullable=True),
    sa.Column('trade_id', sa.Integer(), nullable=True),
    sa.Column('operator_id', sa.Integer(), nullable=True),
    sa.Column('evidence', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('over_quota', 'stage_window', 'grower_mismatch', 'village_mismatch', 'plot_unplanted')", name=op.f('ck_chain_alerts_kind')),
    sa.ForeignKeyConstraint(['operator_id'], ['operators.id'], name=op.f('fk_chain_alerts_operator_id_operators')),
    sa.ForeignKeyConstraint(['plot_id'], ['plots.id'], name=op.f('fk_chain_alerts_plot_id_plots')),
    sa.ForeignKeyConstraint(['trade_id'], ['chain_fruit_trades.id'], name=op.f('fk_chain_alerts_trade_id_chain_fruit_trades')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_alerts'))
    )
    with op.batch_alter_table('chain_alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chain_alerts_kind'), ['kind'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_alerts_operator_id'), ['operator_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_alerts_plot_id'), ['plot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_alerts_trade_id'), ['trade_id'], unique=False)

    op.create_table('chain_lot_inputs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('trade_id', sa.Integer(), nullable=False),
    sa.Column('kg', sa.Numeric(precision=12, scale=3), nullable=False),
    sa.CheckConstraint('kg > 0', name=op.f('ck_chain_lot_inputs_kg_positive')),
    sa.ForeignKeyConstraint(['lot_id'], ['chain_lots.id'], name=op.f('fk_chain_lot_inputs_lot_id_chain_lots')),
    sa.ForeignKeyConstraint(['trade_id'], ['chain_fruit_trades.id'], name=op.f('fk_chain_lot_inputs_trade_id_chain_fruit_trades')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_lot_inputs')),
    sa.UniqueConstraint('lot_id', 'trade_id', name='uq_chain_lot_inputs_lot_trade')
    )
    with op.batch_alter_table('chain_lot_inputs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chain_lot_inputs_lot_id'), ['lot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_chain_lot_inputs_trade_id'), ['trade_id'], unique=False)

    op.create_table('chain_sale_corrections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_uuid', sa.String(length=36), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('sale_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['sale_id'], ['chain_sales.id'], name=op.f('fk_chain_sale_corrections_sale_id_chain_sales')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_chain_sale_corrections_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_sale_corrections')),
    sa.UniqueConstraint('client_uuid', name=op.f('uq_chain_sale_corrections_client_uuid')),
    sa.UniqueConstraint('sale_id', name=op.f('uq_chain_sale_corrections_sale_id'))
    )
    op.create_table('chain_trade_corrections',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('client_uuid', sa.String(length=36), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('trade_id', sa.Integer(), nullable=False),
    sa.Column('replacement_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['replacement_id'], ['chain_fruit_trades.id'], name=op.f('fk_chain_trade_corrections_replacement_id_chain_fruit_trades')),
    sa.ForeignKeyConstraint(['trade_id'], ['chain_fruit_trades.id'], name=op.f('fk_chain_trade_corrections_trade_id_chain_fruit_trades')),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_chain_trade_corrections_user_id_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chain_trade_corrections')),
    sa.UniqueConstraint('client_uuid', name=op.f('uq_chain_trade_corrections_client_uuid')),
    sa.UniqueConstraint('replacement_id', name=op.f('uq_chain_trade_corrections_replacement_id')),
    sa.UniqueConstraint('trade_id', name=op.f('uq_chain_trade_corrections_trade_id'))
    )


def downgrade() -> None:
    op.drop_table('chain_trade_corrections')
    op.drop_table('chain_sale_corrections')
    with op.batch_alter_table('chain_lot_inputs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chain_lot_inputs_trade_id'))
        batch_op.drop_index(batch_op.f('ix_chain_lot_inputs_lot_id'))

    op.drop_table('chain_lot_inputs')
    with op.batch_alter_table('chain_alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chain_alerts_trade_id'))
        batch_op.drop_index(batch_op.f('ix_chain_alerts_plot_id'))
        batch_op.drop_index(batch_op.f('ix_chain_alerts_operator_id'))
        batch_op.drop_index(batch_op.f('ix_chain_alerts_kind'))

    op.drop_table('chain_alerts')
    with op.batch_alter_table('chain_seedling_sales', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chain_seedling_sales_plot_id'))
        batch_op.drop_index(batch_op.f('ix_chain_seedling_sales_nursery_id'))
        batch_op.drop_index(batch_op.f('ix_chain_seedling_sales_grower_id'))

    op.drop_table('chain_seedling_sales')
    with op.batch_alter_table('chain_sales', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chain_sales_seller_operator_id'))
        batch_op.drop_index(batch_op.f('ix_chain_sales_lot_id'))
        batch_op.drop_index(batch_op.f('ix_chain_sales_buyer_operator_id'))

    op.drop_table('chain_sales')
    with op.batch_alter_table('chain_plot_findings', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chain_plot_findings_plot_id'))

    op.drop_table('chain_plot_findings')
    with op.batch_alter_table('chain_lot_sources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chain_lot_sources_source_lot_id'))
        batch_op.drop_index(batch_op.f('ix_chain_lot_sources_lot_id'))

    op.drop_table('chain_lot_sources')
    with op.batch_alter_table('chain_lot_moves', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chain_lot_moves_lot_id'))

    op.drop_table('chain_lot_moves')
    op.drop_table('chain_lot_corrections')
    with op.batch_alter_table('chain_fruit_trades', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chain_fruit_trades_village_id'))
        batch_op.drop_index('ix_chain_fruit_trades_plot_season')
        batch_op.drop_index(batch_op.f('ix_chain_fruit_trades_operator_id'))
        batch_op.drop_index(batch_op.f('ix_chain_fruit_trades_grower_id'))

    op.drop_table('chain_fruit_trades')
    with op.batch_alter_table('chain_lots', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chain_lots_warehouse_id'))
        batch_op.drop_index(batch_op.f('ix_chain_lots_operator_id'))

    op.drop_table('chain_lots')
    with op.batch_alter_table('chain_warehouses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_chain_warehouses_operator_id'))

    op.drop_table('chain_warehouses')
