"""leads: a level edit rewrites its leads in place (level_id in no index, no foreign key, pages with room); a
reclassification records its moves per (from level, to level) with their score range and count

Revision ID: 0022
Revises: 0020
Create Date: 2026-12-05 16:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0020"
branch_labels = None
depends_on = None

FILLFACTOR = 45  # models/leads.py FILLFACTOR; rows written from now on (VACUUM FULL leads applies it to the old ones)


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("ix_leads_unit_level")
        batch_op.drop_constraint("fk_leads_level_id_engagement_levels", type_="foreignkey")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE leads SET (fillfactor = {FILLFACTOR})")
    with op.batch_alter_table("lead_level_changes", schema=None) as batch_op:
        batch_op.alter_column(
            "lead_pk", existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        )
        batch_op.add_column(sa.Column("max_score", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("leads", sa.Integer(), server_default=sa.text("1"), nullable=False))


def downgrade() -> None:
    # Range rows name no lead: they cannot become per-lead rows again.
    op.execute("DELETE FROM lead_level_changes WHERE lead_pk IS NULL")
    with op.batch_alter_table("lead_level_changes", schema=None) as batch_op:
        batch_op.drop_column("leads")
        batch_op.drop_column("max_score")
        batch_op.alter_column(
            "lead_pk", existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE leads RESET (fillfactor)")
    op.execute("UPDATE leads SET level_id = NULL WHERE level_id NOT IN (SELECT id FROM engagement_levels)")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.create_foreign_key(
            "fk_leads_level_id_engagement_levels", "engagement_levels", ["level_id"], ["id"], ondelete="SET NULL"
        )
        batch_op.create_index("ix_leads_unit_level", ["unit_id", "level_id"], unique=False)
