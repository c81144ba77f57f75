"""The per-test clean slate: it empties every table the migrations create, except Alembic's own record."""

from sqlalchemy import inspect, text

from tests.conftest import model_tables


def test_the_models_declare_every_table_the_migrations_create(settings, clean):
    from models.db import get_engine

    live = set(inspect(get_engine(settings.database_url)).get_table_names())
    declared = {t.name for t in model_tables()}
    assert live - declared == {"alembic_version"}  # Alembic's record is the one table the slate must keep
    assert declared <= live


def test_the_migrations_create_the_columns_indexes_and_keys_the_models_declare(settings):
    """Alembic's autogenerate finds nothing to do: a model change without its migration (or a move that changed a
    table) fails here, not on a deployed database."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from models.base import Base
    from models.db import get_engine

    model_tables()  # registers every table
    with get_engine(settings.database_url).connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_the_clean_slate_empties_every_table_restarts_ids_and_keeps_the_schema_version(settings, api, wipe_statement):
    from models.db import get_engine

    assert api.post("/ingest", json={"lead_id": "ada", "event_type": "page_view"}).status_code == 202
    with get_engine(settings.database_url).begin() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
        assert conn.execute(text("SELECT count(*) FROM events")).scalar() == 1
        conn.exec_driver_sql(wipe_statement)
        left = {t.name: conn.execute(text(f'SELECT count(*) FROM "{t.name}"')).scalar() for t in model_tables()}
        sequences = conn.execute(
            text("SELECT sequencename, last_value FROM pg_sequences WHERE schemaname = 'public'")
        ).all()
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == version
    assert {name: n for name, n in left.items() if n} == {}
    assert ("events_id_seq", None) in sequences and ("leads_pk_seq", None) in sequences  # never used since the restart
