"""leads: indexes for the console's keyset pages (by score, by last activity), read in either direction

Revision ID: 0020
Revises: 0015
Create Date: 2026-12-10 10:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("ix_leads_unit_score")
        batch_op.create_index("ix_leads_unit_score", ["unit_id", "score", "lead_id"], unique=False)
    if op.get_bind().dialect.name == "postgresql":  # DESC puts NULLs first there: they must sort lowest, as in SQLite
        columns = ["unit_id", sa.text("last_event_at DESC NULLS LAST"), sa.text("lead_id DESC")]
    else:
        columns = ["unit_id", "last_event_at", "lead_id"]
    op.create_index("ix_leads_unit_activity", "leads", columns, unique=False)


def downgrade() -> None:
    op.drop_index("ix_leads_unit_activity", table_name="leads")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("ix_leads_unit_score")
        batch_op.create_index("ix_leads_unit_score", ["unit_id", "score"], unique=False)
