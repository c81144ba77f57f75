"""How the event lists read events: the columns an event is shown with and their order."""

from __future__ import annotations

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
