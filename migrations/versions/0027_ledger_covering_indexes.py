"""score_deltas, events: a lead's deltas and its events' types read from their indexes alone (PostgreSQL only)

Revision ID: 0027
Revises: 0021
Create Date: 2026-12-05 17:00:00
"""

from alembic import op

revision = "0027"
down_revision = "0021"
branch_labels = None
depends_on = None

# The ledger of a lead covers its whole history (docs/explanations.md): with these, a busy lead's deltas and its
# events' types come from two index ranges, not one heap page per delta and per event. SQLite keeps its indexes.
INDEXES = (
    (
        "ix_score_deltas_lead",
        "score_deltas",
        ["lead_pk", "ruleset_id"],
        ["event_id", "rule_id", "delta", "score_after"],
    ),
    ("ix_events_lead_time", "events", ["lead_pk", "occurred_at", "id"], ["event_type"]),
)


def _rebuild(include: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, columns, covered in INDEXES:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns, postgresql_include=covered if include else [])


def upgrade() -> None:
    _rebuild(include=True)


def downgrade() -> None:
    _rebuild(include=False)
