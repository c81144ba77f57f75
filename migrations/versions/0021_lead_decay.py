"""decay bookkeeping out of the leads row into lead_decay (a pass rewrote every lead's wide row and all its indexes)

Revision ID: 0021
Revises: 0023
Create Date: 2026-12-05 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0023"
branch_labels = None
depends_on = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "lead_decay",
        sa.Column("lead_pk", BIGID, autoincrement=False, nullable=False),
        sa.Column("unit_id", sa.String(length=36), nullable=False),
        sa.Column("anchor_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["lead_pk"], ["leads.pk"], name=op.f("fk_lead_decay_lead_pk_leads"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("lead_pk", name=op.f("pk_lead_decay")),
    )
    op.create_index("ix_lead_decay_due", "lead_decay", ["unit_id", "next_at"], unique=False)
    # Every lead with activity has a row (scoring adds it at the first), with the bookkeeping it had.
    op.execute(
        "INSERT INTO lead_decay (lead_pk, unit_id, anchor_at, checked_at, next_at)"
        " SELECT pk, unit_id, decay_anchor_at, decay_checked_at, decay_next_at FROM leads"
        " WHERE last_event_at IS NOT NULL OR decay_anchor_at IS NOT NULL"
    )
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("ix_leads_decay_due")
        batch_op.drop_column("decay_next_at")
        batch_op.drop_column("decay_checked_at")
        batch_op.drop_column("decay_anchor_at")


def downgrade() -> None:
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decay_anchor_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("decay_checked_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("decay_next_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_leads_decay_due", ["unit_id", "decay_next_at"], unique=False)
    op.execute(
        "UPDATE leads SET decay_anchor_at = d.anchor_at, decay_checked_at = d.checked_at, decay_next_at = d.next_at"
        " FROM lead_decay AS d WHERE d.lead_pk = leads.pk"
    )
    op.drop_index("ix_lead_decay_due", table_name="lead_decay")
    op.drop_table("lead_decay")
