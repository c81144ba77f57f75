"""How events are read: the columns the event lists show and their order, a lead's last events, and what scoring
and every replay of stored events take of them."""

from __future__ import annotations

from sqlalchemy import case, null, select

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
