"""change history: who changed the level table (kind and name kept), which entry a revert restored, and the ruleset
history of publishes and unpublishes (docs/history.md)

Revision ID: 0018
Revises: 0015
Create Date: 2026-12-10 10:00:00
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0018"
down_revision = "0016"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _actor_columns() -> list[sa.Column]:
    return [
        sa.Column("actor_kind", sa.String(length=12), nullable=True),
        sa.Column("actor_name", sa.String(length=320), nullable=True),
    ]


def upgrade() -> None:
    with op.batch_alter_table("level_history", schema=None) as batch_op:
        for column in _actor_columns():
            batch_op.add_column(column)
        batch_op.add_column(sa.Column("reverted_from", sa.String(length=36), nullable=True))
        batch_op.drop_index("ix_level_history_unit_id")
        batch_op.create_index("ix_level_history_unit_time", ["unit_id", "created_at"], unique=False)
    # Entries written before: who they were, as far as the members and credentials still say.
    op.execute(
        "UPDATE level_history SET actor_kind = 'member', "
        "actor_name = (SELECT email FROM members WHERE members.id = level_history.actor) "
        "WHERE actor IN (SELECT id FROM members)"
    )
    op.execute(
        "UPDATE level_history SET actor_kind = 'credential', "
        "actor_name = (SELECT name FROM api_credentials WHERE api_credentials.id = level_history.actor) "
        "WHERE actor IN (SELECT id FROM api_credentials)"
    )
    op.execute("UPDATE level_history SET actor_kind = 'system', actor_name = actor WHERE actor = 'wipe-seed'")

    op.create_table(
        "ruleset_history",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("unit_id", sa.String(length=36), nullable=False),
        sa.Column("ruleset_id", sa.String(length=36), nullable=False),
        sa.Column("ruleset_name", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("snapshot", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        *_actor_columns(),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["org_units.id"], name=op.f("fk_ruleset_history_unit_id_org_units"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ruleset_history")),
    )
    with op.batch_alter_table("ruleset_history", schema=None) as batch_op:
        batch_op.create_index("ix_ruleset_history_unit_time", ["unit_id", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ruleset_history", schema=None) as batch_op:
        batch_op.drop_index("ix_ruleset_history_unit_time")
    op.drop_table("ruleset_history")
    with op.batch_alter_table("level_history", schema=None) as batch_op:
        batch_op.drop_index("ix_level_history_unit_time")
        batch_op.create_index("ix_level_history_unit_id", ["unit_id"], unique=False)
        batch_op.drop_column("reverted_from")
        batch_op.drop_column("actor_name")
        batch_op.drop_column("actor_kind")
