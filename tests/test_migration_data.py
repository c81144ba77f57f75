"""Migrations that move data keep it: upgraded and downgraded on a database of their own, on both dialects."""

import dataclasses

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from models.migrate import alembic_config
from tests.conftest import PG_ADMIN_URL, TEST_DB

ROWS = [
    "INSERT INTO organizations (id, name, created_at) VALUES ('o1', 'Org', CURRENT_TIMESTAMP)",
    "INSERT INTO org_units (id, org_id, name, slug, allow_negative_scores, created_at, updated_at) "
    "VALUES ('u1', 'o1', 'Unit', 'unit', false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    *(
        'INSERT INTO engagement_levels (id, org_id, unit_id, name, min_score, color, "order", created_at, updated_at) '
        f"VALUES ('{lid}', 'o1', 'u1', '{name}', {low}, '#000000', {low}, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        for lid, name, low in (("l-warm", "Warm", 0), ("l-hot", "Hot", 50))
    ),
    *(
        "INSERT INTO leads (pk, org_id, unit_id, lead_id, metadata, score, created_at, updated_at) "
        f"VALUES ({pk}, 'o1', 'u1', 'lead{pk}', '{{}}', 0, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
        for pk in (1, 2, 3, 4)
    ),
    "INSERT INTO hubspot_contacts (lead_pk, unit_id, synced_level_id, failed_level_id) VALUES (1, 'u1', 'l-hot', NULL)",
    "INSERT INTO hubspot_contacts (lead_pk, unit_id, synced_level_id, failed_level_id) "
    "VALUES (2, 'u1', 'l-warm', 'l-hot')",
    "INSERT INTO hubspot_contacts (lead_pk, unit_id, synced_level_id, failed_level_id) VALUES (3, 'u1', NULL, NULL)",
    # a level deleted since it was written (or refused): still unlike the lead's, NULL when it has no level now
    "INSERT INTO hubspot_contacts (lead_pk, unit_id, synced_level_id, failed_level_id) "
    "VALUES (4, 'u1', 'l-gone', 'l-gone')",
]


@pytest.fixture(params=["postgresql", "sqlite"])
def scratch(request, settings, tmp_path):
    """Settings whose database is empty and this test's alone."""
    if request.param == "sqlite":
        yield dataclasses.replace(settings, database_url=f"sqlite:///{tmp_path / 'migrations.db'}")
        return
    name = f"{TEST_DB}_migrations"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield dataclasses.replace(settings, database_url=settings.database_url.rsplit("/", 1)[0] + "/" + name)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_hubspot_contacts_keep_the_level_they_hold_by_name_and_back(scratch):
    """0029 turns the level id last written (or refused) into the level's name, and its downgrade turns it back."""
    config = alembic_config(scratch)
    command.upgrade(config, "0028")
    engine = create_engine(scratch.database_url)

    def read(columns: str) -> dict:
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT lead_pk, {columns} FROM hubspot_contacts ORDER BY lead_pk"))
            return {pk: tuple(values) for pk, *values in rows}

    try:
        with engine.begin() as conn:
            for row in ROWS:
                conn.execute(text(row))
        command.upgrade(config, "0029")
        assert read("synced_level, failed_level") == {
            1: ("Hot", None),
            2: ("Warm", "Hot"),
            3: (None, None),
            4: ("", ""),
        }
        command.downgrade(config, "0028")
        assert read("synced_level_id, failed_level_id") == {
            1: ("l-hot", None),
            2: ("l-warm", "l-hot"),
            3: (None, None),
            4: ("", ""),
        }
    finally:
        engine.dispose()
