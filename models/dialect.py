"""Statements that read the same on PostgreSQL and SQLite, and running one on psycopg itself where it is hot."""

from __future__ import annotations

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session


def psycopg_rows(session: Session, statement, params: dict) -> list[tuple]:
    """A PostgreSQL statement's rows (named tuples) run by psycopg itself on the session's connection and transaction:
    for the ingest commit's two statements per batch, SQLAlchemy's execution and result machinery cost as much
    client CPU as psycopg's whole round trip."""
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
