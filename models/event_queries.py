"""How events are read for showing: the columns an event is shown with, their order, a lead's last events."""

from __future__ import annotations

from sqlalchemy import select

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
