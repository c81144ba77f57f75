"""Small dialect helpers so set-based statements read the same on PostgreSQL and SQLite."""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def driver_rows(session: Session, statement, params: dict) -> list[tuple]:
    """A PostgreSQL statement's rows (named tuples) run by psycopg itself on the session's connection and transaction:
    for the ingest commit's two statements per batch, SQLAlchemy's execution and result machinery cost as much
    client CPU as psycopg's whole round trip."""
    import psycopg
    from psycopg.rows import namedtuple_row

    sql = _driver_sql.get(statement)
    if sql is None:  # SQLAlchemy's own rendering for psycopg: :name -> %(name)s, a literal % doubled
        sql = _driver_sql[statement] = str(statement.compile(dialect=session.get_bind().dialect))
    conn = session.connection().connection.driver_connection
    try:
        with conn.cursor(row_factory=namedtuple_row) as cur:
            return cur.execute(sql, params).fetchall()
    except psycopg.Error as exc:  # as SQLAlchemy raises it (OperationalError, IntegrityError...), for the same handlers
        raise DBAPIError.instance(sql, params, exc, psycopg.Error) from exc


_driver_sql: dict = {}  # text() statement -> its SQL in psycopg's %(name)s style


def insert_for(session: Session, table):
    """An INSERT that supports ON CONFLICT on the session's backend."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


UNIT_LOCK_SPACE = 1818  # advisory-lock namespace for "OU configuration vs scoring"


ALERT_LOCK_SPACE = 1820  # advisory-lock namespace for "examining an OU's level changes into alerts"


def lock_unit(session: Session, unit_id: str, shared: bool = False, space: int = UNIT_LOCK_SPACE) -> None:
    """Configuration changes of an OU (exclusive) never interleave with a scoring batch (shared).

    A batch reads rulesets and levels once; without this a publish or level edit could land between
    that read and the batch's commit and be silently undone. SQLite serializes writers already.
    Another space serializes something else per OU (ALERT_LOCK_SPACE: one alert examiner at a time).
    """
    if session.get_bind().dialect.name == "postgresql":
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        session.execute(text(f"SELECT {fn}(:space, hashtext(:u))"), {"space": space, "u": unit_id})


def lock_leads(session: Session, lead_pks) -> None:
    """Row-lock these leads in pk order (NO KEY UPDATE, as scoring does), not the whole OU."""
    if lead_pks and session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT count(*) FROM (SELECT 1 FROM leads WHERE pk = ANY(:pks) ORDER BY pk FOR NO KEY UPDATE) AS locked"),
            {"pks": sorted(lead_pks)},
        )


def lock_unit_leads(session: Session, unit_id: str) -> None:
    """Row-lock every lead of an OU in pk order (NO KEY UPDATE: ingest's foreign-key checks still pass)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT count(*) FROM (SELECT 1 FROM leads WHERE unit_id = :u ORDER BY pk FOR NO KEY UPDATE) AS locked"),
            {"u": unit_id},
        )
