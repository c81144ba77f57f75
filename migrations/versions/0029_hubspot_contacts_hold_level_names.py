"""hubspot_contacts: the level's name last written (or refused), in place of its id, so a rename resyncs its contacts

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-05 21:20:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

COLUMNS = (("synced_level", "synced_level_id"), ("failed_level", "failed_level_id"))


def upgrade() -> None:
    with op.batch_alter_table("hubspot_contacts", schema=None) as batch_op:
        for name, _ in COLUMNS:
            batch_op.add_column(sa.Column(name, sa.String(length=100), nullable=True))
    # What HubSpot holds is taken to be the level's name today: a rename before this revision stays unseen until the
    # lead's next change (or POST /integrations/hubspot/sync). A level deleted since is '' (no level is named so):
    # still unlike the lead's, so a lead now without a level is written (or retried) as before.
    for name, old in COLUMNS:
        op.execute(
            f"UPDATE hubspot_contacts SET {name} = COALESCE("
            f"(SELECT el.name FROM engagement_levels el WHERE el.id = hubspot_contacts.{old}), '') WHERE {old} IS NOT NULL"
        )
    with op.batch_alter_table("hubspot_contacts", schema=None) as batch_op:
        for _, old in COLUMNS:
            batch_op.drop_column(old)


def downgrade() -> None:
    with op.batch_alter_table("hubspot_contacts", schema=None) as batch_op:
        for _, old in COLUMNS:
            batch_op.add_column(sa.Column(old, sa.String(length=36), nullable=True))
    for name, old in COLUMNS:
        op.execute(  # a name no level has now is '' (no level's id), still unlike the lead's
            f"UPDATE hubspot_contacts SET {old} = COALESCE((SELECT el.id FROM engagement_levels el "
            f"WHERE el.unit_id = hubspot_contacts.unit_id AND el.name = hubspot_contacts.{name}), '') "
            f"WHERE {name} IS NOT NULL"
        )
    with op.batch_alter_table("hubspot_contacts", schema=None) as batch_op:
        for name, _ in COLUMNS:
            batch_op.drop_column(name)
