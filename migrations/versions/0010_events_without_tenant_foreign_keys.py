"""events without foreign keys on org_id/unit_id (the lead's keys already tie an event to its tenant)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 02:20:00
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_events_org_id_organizations"), type_="foreignkey")
        batch_op.drop_constraint(batch_op.f("fk_events_unit_id_org_units"), type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_events_unit_id_org_units"), "org_units", ["unit_id"], ["id"], ondelete="CASCADE"
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_events_org_id_organizations"), "organizations", ["org_id"], ["id"], ondelete="CASCADE"
        )
