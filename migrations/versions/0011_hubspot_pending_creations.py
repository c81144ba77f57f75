"""hubspot pending creations (contacts announced while no token served the OU)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hubspot_pending_creations",
        sa.Column("unit_id", sa.String(length=36), nullable=False),
        sa.Column("hubspot_id", sa.String(length=20), nullable=False),
        sa.Column("portal_id", sa.String(length=20), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["unit_id"],
            ["org_units.id"],
            name=op.f("fk_hubspot_pending_creations_unit_id_org_units"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("unit_id", "hubspot_id", name=op.f("pk_hubspot_pending_creations")),
    )


def downgrade() -> None:
    op.drop_table("hubspot_pending_creations")
