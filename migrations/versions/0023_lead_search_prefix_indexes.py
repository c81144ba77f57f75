"""leads, lead_aliases: the search by id or alias prefix read from an index (text_pattern_ops, PostgreSQL only)

Revision ID: 0023
Revises: 0020
Create Date: 2026-12-05 16:00:00
"""

from alembic import op

revision = "0023"
down_revision = "0020"
branch_labels = None
depends_on = None

# Under a language collation (en_US.UTF-8, C.UTF-8) PostgreSQL reads no index for a prefix LIKE; an index in byte order
# serves the range the prefix is (models/lead_ops.py _starts_with). SQLite's search stays a LIKE without one.
INDEXES = (("ix_leads_unit_id_prefix", "leads", "lead_id"), ("ix_lead_aliases_unit_prefix", "lead_aliases", "value"))


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, column in INDEXES:
        op.create_index(name, table, ["unit_id", column], postgresql_ops={column: "text_pattern_ops"})


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
