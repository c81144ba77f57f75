"""Engine and session factory, one per process (forked workers get their own)."""

from __future__ import annotations

import os

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

_engines: dict[tuple[int, str], Engine] = {}
_role = "web"  # what this process's PostgreSQL connections say they are (application_name); see run_as_worker


def application_name(role: str) -> str:
    """`leadpulse-<role>:<pid>` in pg_stat_activity: an operator (or the fault suite) tells which process holds a
    connection, a lock or a transaction, without mapping client ports to processes."""
    return f"{role}:{os.getpid()}"


def run_as_worker() -> None:
    """For `leadpulse worker`, before its first engine: pooled connections are pinged before use (one round trip a
    checkout, against jobs that run for many) so that a job after a PostgreSQL restart gets a fresh connection instead
    of failing on a dead one; the web skips the ping on its hot path and fails one request instead."""
    global _role
    _role = "worker"


# Side pools beside the requests' own: each has its few connections and its timeouts set at connect (no round trip per
# transaction). The ingest committer's 2, so that requests exhausting the pool never stall the commit they wait on; the
# audit log's 3, whose writes give up quickly rather than hold a request (webapp/services/audit_log.py): a lock wait
# past 0.5 s, a statement past 2 s or a second waiting for a free connection drops the row, never the answer.
SIDE_POOLS = {  # side: (application_name, pool_size, max_overflow, pool_timeout, connection options)
    "committer": ("leadpulse-ingest", 1, 1, 10, "-c lock_timeout=10s -c statement_timeout=20s"),
    "audit": ("leadpulse-audit", 1, 2, 1, "-c lock_timeout=500ms -c statement_timeout=2s"),
}


def make_engine(url: str, side: str | None = None) -> Engine:
    """Create an engine (side: one of SIDE_POOLS); SQLite gets WAL and a busy timeout so web and worker can share the
    file."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False, "isolation_level": None})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # Writers (the ingest committer, scoring jobs) take the write lock up front: a deferred
            # read-then-write transaction fails with SQLITE_BUSY instead of waiting when another wrote.
            # Everything else begins deferred, so a request reading never blocks a writer.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate") else "BEGIN")

        return engine
    if side is not None:
        name, size, overflow, wait, options = SIDE_POOLS[side]
        return create_engine(
            url,
            pool_size=size,
            max_overflow=overflow,
            pool_timeout=wait,
            pool_recycle=1800,
            connect_args={"options": options, "application_name": application_name(name)},
        )
    # The web has no pre-ping (a round trip per request): a connection found dead after a database restart fails
    # that one request with a 503 and is discarded by the pool; workers ping (run_as_worker). At most 20 connections
    # per process: a gevent web worker may hold many more requests than that, and one that finds none free in 10 s
    # gets a 503.
    return create_engine(
        url,
        pool_size=10,
        max_overflow=10,
        pool_timeout=10,
        pool_recycle=1800,
        pool_pre_ping=_role == "worker",
        connect_args={"application_name": application_name(f"leadpulse-{_role}")},
    )


def get_engine(url: str, side: str | None = None) -> Engine:
    """Return this process's engine for url (or its side pool); a fork never reuses its parent's connections."""
    key = (os.getpid(), (f"{side}:" if side else "") + url)
    engine = _engines.get(key)
    if engine is None:
        engine = _engines[key] = make_engine(url, side)
    return engine


def committer_sessions(url: str) -> sessionmaker[Session]:
    """The ingest committer's own connections: requests exhausting the pool never stall the commit they wait on."""
    if url.startswith("sqlite"):
        return session_factory(url, writer=True)  # one writer at a time anyway
    return sessionmaker(bind=get_engine(url, side="committer"), expire_on_commit=False)


def audit_sessions(url: str) -> sessionmaker[Session]:
    """The audit log's own connections, quick to give up (SIDE_POOLS); on SQLite the one file's sessions."""
    if url.startswith("sqlite"):
        return session_factory(url)
    return sessionmaker(bind=get_engine(url, side="audit"), expire_on_commit=False)


def session_factory(url: str, writer: bool = False) -> sessionmaker[Session]:
    """Sessions on this process's engine; writer=True for transactions that read then write (SQLite)."""
    engine = get_engine(url)
    if writer:
        engine = engine.execution_options(sqlite_immediate=True)
    return sessionmaker(bind=engine, expire_on_commit=False)


def read_only_snapshot(session: Session) -> Session:
    """Make a fresh session's transaction one snapshot that cannot write: a long read (a rescore preview, a backtest)
    then counts leads and events as of one moment, and a write by mistake fails instead of landing. PostgreSQL only
    (SQLite's read transaction is one snapshot already)."""
    if session.get_bind().dialect.name == "postgresql":
        session.connection(execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True})
    return session
