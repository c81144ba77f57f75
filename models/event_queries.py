"""How events are read: the columns the event lists show and their order, a lead's last events, and what scoring
and every replay of stored events take of them."""

from __future__ import annotations

from sqlalchemy import Select, case, null, select, text
from sqlalchemy.engine import Result
from sqlalchemy.orm import Session

from models.engine import DECAY, EventSpec, event_spec
from models.events import Event
from models.leads import Lead

# What an event is shown with (its lead's public id joined on Lead.pk == Event.lead_pk), newest first.
EVENT_COLUMNS = (
    Event.id,
    Lead.lead_id,
    Event.event_type,
    Event.occurred_at,
    Event.received_at,
    Event.metadata_,
    Event.status,
    Event.suppressed_reason,
)
NEWEST_FIRST = (Event.occurred_at.desc(), Event.id.desc())

# What scoring reads of an event; of its metadata only a DECAY's (its decrease, rule and inactivity start).
SYSTEM_METADATA = case((Event.event_type == DECAY, Event.metadata_), else_=null()).label("system")
SCORING_COLUMNS = (Event.id, Event.lead_pk, Event.event_type, Event.occurred_at, SYSTEM_METADATA)


STREAM_ROWS = 5000  # rows a fetch of a whole-OU replay: memory holds this many, whatever the size of the OU


def stream_in_lead_order(session: Session, stmt: Select) -> Result:
    """Rows of a whole OU's events (stmt ordered by lead, time, id) from a server-side cursor, STREAM_ROWS a fetch.

    On PostgreSQL the cursor is planned without plain index scans: what is left is one pass over the OU's events (a
    sequential scan, or a bitmap scan of the unit's index for a small OU) and a sort. Walking ix_events_lead_time,
    which the planner prefers otherwise, reads the heap once per event in random order, and every OU's events with
    it (the index has no unit): several times as long at 1,000,000 events (docs/previews.md, "Limits"). The setting
    is back to what it was once the cursor is declared (the plan is made then), for the rest of the transaction.
    """
    stmt = stmt.execution_options(yield_per=STREAM_ROWS)
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return conn.execute(stmt)
    was = conn.execute(text("SELECT current_setting('enable_indexscan')")).scalar()
    conn.execute(text("SET LOCAL enable_indexscan = off"))
    try:
        return conn.execute(stmt)
    finally:
        conn.execute(text("SELECT set_config('enable_indexscan', :was, true)"), {"was": was})


def stored_spec(row) -> EventSpec:
    """A stored event (a row with SCORING_COLUMNS) as the engine takes it: scoring, publishing, previews and
    backtests all build it here."""
    return event_spec(row.id, row.event_type, row.occurred_at, row.system)


def recent_events(session, lead_pk: int, limit: int = 5) -> list[tuple[str, object]]:
    """(event_type, occurred_at), newest first: the "last events" a Slack alert lists."""
    return [
        tuple(r)
        for r in session.execute(
            select(Event.event_type, Event.occurred_at)
            .where(Event.lead_pk == lead_pk)
            .order_by(*NEWEST_FIRST)
            .limit(limit)
        )
    ]
