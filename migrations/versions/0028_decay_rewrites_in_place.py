"""lead_decay rewritten in place: no due index (an index by OU and key instead), pages with room

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-05 19:20:00
"""

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

DECAY_FILLFACTOR = 50  # models/leads.py DECAY_FILLFACTOR


def upgrade() -> None:
    # A decay pass rewrites the bookkeeping row of every lead it looks at, and scoring clears its due time: with the
    # due time in no index and room on each page, most of those are HOT updates. The OU and key, which never change,
    # keep a pass of one OU and a rule edit's reschedule to that OU's rows.
    op.drop_index("ix_lead_decay_due", table_name="lead_decay")
    op.create_index("ix_lead_decay_unit", "lead_decay", ["unit_id", "lead_pk"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # Rows written from now on; `VACUUM FULL lead_decay` gives the ones already there their room (README).
        op.execute(f"ALTER TABLE lead_decay SET (fillfactor = {DECAY_FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE lead_decay RESET (fillfactor)")
    op.drop_index("ix_lead_decay_unit", table_name="lead_decay")
    op.create_index("ix_lead_decay_due", "lead_decay", ["unit_id", "next_at"], unique=False)
