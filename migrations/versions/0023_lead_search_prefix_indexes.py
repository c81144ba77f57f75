"""leads, lead_aliases: the search by id or alias prefix read from an index (text_pattern_ops, PostgreSQL only)

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 16:00:00
"""

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

# Under a language collation (en_US.UTF-8, C.UTF-8) PostgreSQL reads no index for a prefix LIKE; an index in byte order
# serves the range the prefix is (models/lead_ops.py _starts_with), with the lead each value names, so the matches are
# read from the index alone. SQLite's search stays a LIKE without one.
INDEXES = (
    ("ix_leads_unit_id_prefix", "leads", "lead_id", "pk"),
    ("ix_lead_aliases_unit_prefix", "lead_aliases", "value", "lead_pk"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, column, lead in INDEXES:
        ops = {column: "text_pattern_ops"}
        op.create_index(name, table, ["unit_id", column], postgresql_ops=ops, postgresql_include=[lead])


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, *_ in INDEXES:
        op.drop_index(name, table_name=table)
