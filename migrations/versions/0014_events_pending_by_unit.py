"""each OU's pending events in arrival order (scoring takes them round-robin across OUs)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_events_pending_unit",
        "events",
        ["unit_id", "id"],
        unique=False,
        postgresql_where=sa.text("status = 0"),
        sqlite_where=sa.text("status = 0"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_events_pending_unit",
        table_name="events",
        postgresql_where=sa.text("status = 0"),
        sqlite_where=sa.text("status = 0"),
    )
