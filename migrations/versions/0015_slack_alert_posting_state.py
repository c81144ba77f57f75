"""slack alerts: the "posting" state and its attempt time, committed before each post (exactly-once on the database)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

BEFORE = "status = 'pending'"
AFTER = "status IN ('pending', 'posting')"


def _pending_index(batch_op, where: str) -> None:
    batch_op.create_index(
        "ix_slack_alerts_pending",
        ["unit_id", "id"],
        unique=False,
        postgresql_where=sa.text(where),
        sqlite_where=sa.text(where),
    )


def upgrade() -> None:
    with op.batch_alter_table("slack_alerts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("posting_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.drop_index("ix_slack_alerts_pending")
        _pending_index(batch_op, AFTER)


def downgrade() -> None:
    op.execute("UPDATE slack_alerts SET status = 'pending' WHERE status = 'posting'")
    with op.batch_alter_table("slack_alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_slack_alerts_pending")
        _pending_index(batch_op, BEFORE)
        batch_op.drop_column("posting_at")
