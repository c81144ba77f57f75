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


class epoch_us(FunctionElement):
    """A timestamp column as microseconds since 1970 (a BIGINT)."""

    type = BigInteger()
    inherit_cache = True


@compiles(epoch_us, "postgresql")
def _epoch_us_pg(element, compiler, **kw):
    return f"CAST(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)}) * 1000000 AS BIGINT)"


@compiles(epoch_us, "sqlite")
def _epoch_us_sqlite(element, compiler, **kw):
    ts = compiler.process(element.clauses, **kw)  # stored as 'YYYY-MM-DD HH:MM:SS.ffffff' (models.base.UTCDateTime)
    return f"(CAST(strftime('%s', {ts}) AS INTEGER) * 1000000 + CAST(substr({ts}, 21, 6) AS INTEGER))"


class from_epoch_us(FunctionElement):
    """Microseconds since 1970 as a timestamp, stored as the column type stores one."""

    type = UTCDateTime()
    inherit_cache = True


@compiles(from_epoch_us, "postgresql")
def _from_epoch_us_pg(element, compiler, **kw):
    return f"(TIMESTAMPTZ 'epoch' + ({compiler.process(element.clauses, **kw)}) * INTERVAL '1 microsecond')"


@compiles(from_epoch_us, "sqlite")
def _from_epoch_us_sqlite(element, compiler, **kw):
    us = compiler.process(element.clauses, **kw)
    return f"(strftime('%Y-%m-%d %H:%M:%S', ({us}) / 1000000, 'unixepoch') || printf('.%06d', ({us}) % 1000000))"


class rfc3339_text(FunctionElement):
    """A timestamp column as RFC 3339 text in UTC with microseconds ('2025-08-15T12:00:00.000000Z')."""

    type = String()
    inherit_cache = True


@compiles(rfc3339_text, "postgresql")
def _rfc3339_pg(element, compiler, **kw):
    ts = compiler.process(element.clauses, **kw)
    return f"to_char({ts} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


@compiles(rfc3339_text, "sqlite")
def _rfc3339_sqlite(element, compiler, **kw):
    return f"(replace({compiler.process(element.clauses, **kw)}, ' ', 'T') || 'Z')"


class json_object(FunctionElement):
    """A JSON object from alternating keys and values."""

    type = JSONType
    inherit_cache = True


@compiles(json_object, "postgresql")
def _json_object_pg(element, compiler, **kw):
    return f"jsonb_build_object({compiler.process(element.clauses, **kw)})"


@compiles(json_object, "sqlite")
def _json_object_sqlite(element, compiler, **kw):
    return f"json_object({compiler.process(element.clauses, **kw)})"
