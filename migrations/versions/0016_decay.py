"""decay rules, each lead's decay bookkeeping, and the OU's scoring settings (ABM, session idle timeout)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-10 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "decay_rules",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("org_id", sa.String(length=36), nullable=False),
        sa.Column("unit_id", sa.String(length=36), nullable=False),
        sa.Column("inactive_for", sa.Integer(), nullable=False),
        sa.Column("unit", sa.String(length=10), nullable=False),
        sa.Column("decrease", sa.Integer(), nullable=False),
        sa.Column("applies_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["org_id"], ["organizations.id"], name=op.f("fk_decay_rules_org_id_organizations"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["org_units.id"], name=op.f("fk_decay_rules_unit_id_org_units"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decay_rules")),
    )
    op.create_index(op.f("ix_decay_rules_unit_id"), "decay_rules", ["unit_id"], unique=False)
    with op.batch_alter_table("org_units", schema=None) as batch_op:
        batch_op.add_column(sa.Column("abm_enabled", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column("session_timeout_minutes", sa.Integer(), server_default="30", nullable=False))
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decay_anchor_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("decay_checked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("decay_next_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_leads_decay_due", ["unit_id", "decay_next_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("ix_leads_decay_due")
        batch_op.drop_column("decay_next_at")
        batch_op.drop_column("decay_checked_at")
        batch_op.drop_column("decay_anchor_at")
    with op.batch_alter_table("org_units", schema=None) as batch_op:
        batch_op.drop_column("session_timeout_minutes")
        batch_op.drop_column("abm_enabled")
    op.drop_index(op.f("ix_decay_rules_unit_id"), table_name="decay_rules")
    op.drop_table("decay_rules")
