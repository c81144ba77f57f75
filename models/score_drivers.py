"""Why a lead scores what it does: the event types that gave it the most points lately, and its last events."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from models.base import utcnow
from models.events import Event, ScoreDelta
from models.scoring import Ruleset

DRIVER_DAYS = 30


def top_drivers(session, unit_id: str, lead_pks: list[int]) -> dict[int, str]:
    """'demo_request +60, page_view +15': the event types that gave each lead the most points lately."""
    if not lead_pks:
        return {}
    primary = session.execute(
        select(Ruleset.id).where(Ruleset.unit_id == unit_id, Ruleset.is_primary.is_(True))
    ).scalar()
    if primary is None:
        return {}
    points = func.sum(ScoreDelta.delta)
    rows = session.execute(
        select(ScoreDelta.lead_pk, Event.event_type, points.label("points"))
        .join(Event, Event.id == ScoreDelta.event_id)
        .where(
            ScoreDelta.lead_pk.in_(lead_pks),
            ScoreDelta.ruleset_id == primary,
            Event.occurred_at >= utcnow() - timedelta(days=DRIVER_DAYS),
        )
        .group_by(ScoreDelta.lead_pk, Event.event_type)
    ).all()
    per_lead: dict[int, list] = {}
    for r in rows:
        per_lead.setdefault(r.lead_pk, []).append((int(r.points or 0), r.event_type))
    return {
        pk: ", ".join(f"{et} {p:+d}" for p, et in sorted(items, key=lambda x: (-x[0], x[1]))[:3] if p)
        for pk, items in per_lead.items()
    }


def recent_events(session, lead_pk: int, limit: int = 5) -> list[tuple[str, object]]:
    """(event_type, occurred_at), newest first."""
    return [
        tuple(r)
        for r in session.execute(
            select(Event.event_type, Event.occurred_at)
            .where(Event.lead_pk == lead_pk)
            .order_by(Event.occurred_at.desc(), Event.id.desc())
            .limit(limit)
        )
    ]
