"""Small dialect helpers so set-based statements read the same on PostgreSQL and SQLite."""
from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_for(session: Session, table):
    """An INSERT that supports ON CONFLICT on the session's backend."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def lock_unit_leads(session: Session, unit_id: str) -> None:
    """Row-lock every lead of an OU in pk order, so set-based rewrites never race a scoring worker."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT count(*) FROM (SELECT 1 FROM leads WHERE unit_id = :u ORDER BY pk FOR UPDATE) AS locked"),
            {"u": unit_id},
        )
