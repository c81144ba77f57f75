"""Score history, rankings and event statistics, read from the stored events and their score deltas (docs/history.md).

History is derived, not snapshotted: score_deltas are written in the transaction that scores each event and rewritten
by every replay (late events, merges, deletions, publishing), so an hourly series read from them is exact for any
hour without a job that could fall behind or a second copy that could disagree with the explanations.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Integer, String, and_, case, func, literal, select, union_all
from sqlalchemy.orm import Session

from models.base import utcnow
from models.events import PENDING, SCORED, SUPPRESSED, Event, ScoreDelta
from models.lead_ops import SORTS, list_statement
from models.leads import Lead
from models.scoring import Ruleset

HISTORY_DAYS = 90  # how far back history, gains and analytics reach: what an index range keeps cheap
DECAY = "DECAY"  # the system's inactivity events: score changes, not activity


@dataclass(frozen=True)
class HourPoint:
    hour: datetime
    score: int  # at the end of the hour
    change: int
    events: int  # events that changed (or held at the floor) the score in the hour


def primary_ruleset(session: Session, unit_id: str) -> str | None:
    return session.execute(select(Ruleset.id).where(Ruleset.unit_id == unit_id, Ruleset.is_primary.is_(True))).scalar()


def hour_start(when: datetime) -> datetime:
    return when.replace(minute=0, second=0, microsecond=0)


def _hour_of(session: Session, column):
    """The UTC hour an instant falls in, in SQL (PostgreSQL: a timestamp; SQLite: its text)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date_trunc("hour", func.timezone("UTC", column))
    return func.strftime("%Y-%m-%dT%H:00:00", column)


def _as_utc(value) -> datetime:
    value = datetime.fromisoformat(value) if isinstance(value, str) else value
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _deltas(ruleset_id: str):
    """Events joined to what they did to one ruleset's score (the delta's primary key: one lookup per event)."""
    return and_(ScoreDelta.event_id == Event.id, ScoreDelta.ruleset_id == ruleset_id)


def lead_history(session: Session, lead_pk: int, ruleset_id: str, start: datetime) -> tuple[int, list[HourPoint]]:
    """(the score as `start` begins, each hour from it in which the score changed): read through the lead's
    (lead_pk, occurred_at) index, so its cost is the lead's events in the window, never the OU's; the window's deltas
    may come from the lead's covering index of deltas (a delta's lead is its event's), not one heap page each."""
    before = session.execute(
        select(ScoreDelta.score_after)
        .join(Event, _deltas(ruleset_id))
        .where(Event.lead_pk == lead_pk, Event.occurred_at < start)
        .order_by(Event.occurred_at.desc(), Event.id.desc())
        .limit(1)
    ).scalar()
    hour = _hour_of(session, Event.occurred_at).label("hour")
    rows = session.execute(
        select(hour, func.sum(ScoreDelta.delta), func.count())
        .join(ScoreDelta, _deltas(ruleset_id))
        .where(Event.lead_pk == lead_pk, Event.occurred_at >= start, ScoreDelta.lead_pk == lead_pk)
        .group_by(hour)
        .order_by(hour)
    ).all()
    score = start_score = before or 0
    points = []
    for at, change, events in rows:  # a delta is its score's after minus before, so the running sum is the score
        score += int(change)
        points.append(HourPoint(_as_utc(at), score, int(change), events))
    return start_score, points


def _events_in(unit_id: str, ruleset_id: str, start: datetime, end: datetime | None, *, activity: bool = False):
    """The OU's events in [start, end) with the delta each gave the ruleset (null: none), read once (MATERIALIZED):
    the range comes from the (unit_id, occurred_at) index and each delta by its primary key, so the work is the
    range's events, never a scan of every OU's deltas (which the planner picks for a join here). activity: without
    the system's DECAY events."""
    delta = (
        select(ScoreDelta.delta)
        .where(ScoreDelta.event_id == Event.id, ScoreDelta.ruleset_id == ruleset_id)
        .scalar_subquery()
    )
    window = [Event.unit_id == unit_id, Event.occurred_at >= start, *([Event.occurred_at < end] if end else [])]
    if activity:
        window.append(Event.event_type != DECAY)
    return (
        select(Event.lead_pk, Event.event_type, Event.status, delta.label("delta"))
        .where(*window)
        .cte("ranged")
        .prefix_with("MATERIALIZED")
    )


def score_gains(
    session: Session, unit_id: str, ruleset_id: str, start: datetime, end: datetime | None, limit: int
) -> list:
    """The leads whose score rose most over [start, end), with their current score and level."""
    ranged = _events_in(unit_id, ruleset_id, start, end)
    gain = func.sum(ranged.c.delta)
    gains = (
        select(ranged.c.lead_pk, gain.label("gain"), func.count(ranged.c.delta).label("changes"))
        .where(ranged.c.delta.isnot(None))
        .group_by(ranged.c.lead_pk)
        .having(gain > 0)
        .order_by(gain.desc(), ranged.c.lead_pk)
        .limit(limit)
        .subquery()
    )
    leads = list_statement(session, unit_id, {}, utcnow())  # as GET /leads shows them, with their level
    return session.execute(
        leads.add_columns(gains.c.gain, gains.c.changes)
        .join(gains, gains.c.lead_pk == Lead.pk)
        .order_by(gains.c.gain.desc(), Lead.lead_id)
    ).all()


def top_leads(session: Session, unit_id: str, limit: int) -> list:
    """The OU's highest scores, read from the top of its (unit_id, score) index."""
    return session.execute(list_statement(session, unit_id, {}, utcnow()).order_by(*SORTS["-score"]).limit(limit)).all()


@dataclass
class Activity:
    totals: dict
    by_type: list[dict]  # the most frequent types first, at most `top`


def event_activity(
    session: Session, unit_id: str, ruleset_id: str | None, start: datetime, end: datetime | None, top: int
) -> Activity:
    """What the OU's events in [start, end) were, DECAY left out (the system's, not the leads' activity): counts by
    status, leads, and the points they gave the ruleset; by type, the `top` most frequent. One statement, the range
    read once (_events_in): the totals are its row without a type, the types the others."""
    ranged = _events_in(unit_id, ruleset_id or "", start, end, activity=True)
    points = func.coalesce(func.sum(ranged.c.delta), 0).label("points")
    leads = func.count(ranged.c.lead_pk.distinct()).label("leads")
    events = func.count().label("events")

    def by_status(status: int):
        return func.coalesce(func.sum(case((ranged.c.status == status, 1), else_=0)), 0)

    totals = select(
        literal(None, String).label("event_type"),
        events,
        leads,
        func.count(ranged.c.event_type.distinct()).label("event_types"),
        by_status(SCORED).label("scored"),
        by_status(SUPPRESSED).label("suppressed"),
        by_status(PENDING).label("pending"),
        points,
    )
    nothing = literal(None, Integer)
    types = (
        select(ranged.c.event_type, events, leads, nothing, nothing, nothing, nothing, points)
        .group_by(ranged.c.event_type)
        .order_by(func.count().desc(), ranged.c.event_type)
        .limit(top)
    )
    rows = session.execute(union_all(totals, types.subquery().select())).all()
    first = next(r for r in rows if r.event_type is None)  # an event's type is never null
    rest = sorted((r for r in rows if r.event_type is not None), key=lambda r: (-r.events, r.event_type))
    return Activity(
        totals={key: int(value) for key, value in first._mapping.items() if key != "event_type"},
        by_type=[
            {"event_type": t.event_type, "events": t.events, "leads": t.leads, "points": int(t.points)} for t in rest
        ],
    )


def window_start(now: datetime, days: int) -> datetime:
    """The first hour of a history of `days` days ending now."""
    return hour_start(now - timedelta(days=days))
