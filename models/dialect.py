"""Statements that read the same on PostgreSQL and SQLite, and running one on psycopg itself where it is hot."""

from __future__ import annotations

import psycopg
from psycopg.rows import namedtuple_row
from sqlalchemy import BigInteger, String
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from models.base import JSONType, UTCDateTime


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


# Time as integer microseconds since 1970 and JSON built in SQL, the same on both backends: set-based statements that
# compute event times (models/decay_pass.py) do exact integer arithmetic and never round through floating point.


def _sql_function(name: str, type_, doc: str, postgresql: str, sqlite: str):
    """A SQL function of one argument list ({x} in each backend's template) with its result type."""
    element = type(name, (FunctionElement,), {"type": type_, "inherit_cache": True, "__doc__": doc})
    for dialect, template in (("postgresql", postgresql), ("sqlite", sqlite)):
        compiles(element, dialect)(
            lambda fn, compiler, template=template, **kw: template.format(x=compiler.process(fn.clauses, **kw))
        )
    return element


epoch_us = _sql_function(
    "epoch_us",
    BigInteger(),
    "A timestamp column as microseconds since 1970 (a BIGINT).",
    "CAST(EXTRACT(EPOCH FROM {x}) * 1000000 AS BIGINT)",
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' (models.base.UTCDateTime)
    "(CAST(strftime('%s', {x}) AS INTEGER) * 1000000 + CAST(substr({x}, 21, 6) AS INTEGER))",
)
from_epoch_us = _sql_function(
    "from_epoch_us",
    UTCDateTime(),
    "Microseconds since 1970 as a timestamp, stored as the column type stores one.",
    "(TIMESTAMPTZ 'epoch' + ({x}) * INTERVAL '1 microsecond')",
    "(strftime('%Y-%m-%d %H:%M:%S', ({x}) / 1000000, 'unixepoch') || printf('.%06d', ({x}) % 1000000))",
)
rfc3339_text = _sql_function(
    "rfc3339_text",
    String(),
    "A timestamp column as RFC 3339 text in UTC with microseconds ('2025-08-15T12:00:00.000000Z').",
    "to_char({x} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    "(replace({x}, ' ', 'T') || 'Z')",
)
json_object = _sql_function(
    "json_object",
    JSONType,
    "A JSON object from alternating keys and values.",
    "jsonb_build_object({x})",
    "json_object({x})",
)
