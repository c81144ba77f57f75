"""History and rankings: a lead's hourly score history, the OU's score gains and top leads, and event statistics, all
read from the stored events and their score deltas (models/score_history.py, docs/history.md)."""

from __future__ import annotations

from marshmallow import fields, validate

from models import lead_ops
from models.base import utcnow
from models.score_history import (
    HISTORY_DAYS,
    event_activity,
    lead_history,
    primary_ruleset,
    score_gains,
    top_leads,
    window_start,
)
from models.time_ranges import RANGES, range_start
from webapp.app_state import db
from webapp.auth import current_unit
from webapp.blueprint import Blueprint
from webapp.errors import not_found
from webapp.representations import LevelRefSchema, get_lead, level_dump
from webapp.schema_base import StrictSchema, UTCDateTime

blp = Blueprint("analytics", __name__, description="History and rankings: score history, gains, top leads, event stats")

WINDOWS = [r for r in RANGES if r != "all"]  # every named range within the history kept (HISTORY_DAYS)
RANK_LIMIT = validate.Range(min=1, max=100)
TOP_TYPES = 100  # event types an analytics answer lists (the most frequent); its totals count every type
TOP_EVENTS = 10


class ScoreHistoryArgs(StrictSchema):
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=HISTORY_DAYS))
    ruleset_id = fields.String(
        validate=validate.Length(min=1, max=36), metadata={"description": "a ruleset's history; the primary's if not"}
    )


class HourPointSchema(StrictSchema):
    hour = UTCDateTime(metadata={"description": "the hour's start"})
    score = fields.Integer(metadata={"description": "at the end of the hour"})
    change = fields.Integer()
    events = fields.Integer(metadata={"description": "events that scored in the hour (decay included)"})


class ScoreHistorySchema(StrictSchema):
    lead_id = fields.String()
    ruleset_id = fields.String(metadata={"description": "empty when the OU has no primary ruleset"})
    days = fields.Integer()
    resolution = fields.String(metadata={"description": "hour"})
    start = UTCDateTime(metadata={"description": "the first hour the history covers"})
    end = UTCDateTime(metadata={"description": "now"})
    start_score = fields.Integer(metadata={"description": "the score as the first hour began"})
    points = fields.List(
        fields.Nested(HourPointSchema),
        metadata={"description": "each hour whose events changed the score, oldest first; between two the score held"},
    )


class WindowArgs(StrictSchema):
    range = fields.String(load_default="last_7d", validate=validate.OneOf(WINDOWS))


class GainsArgs(WindowArgs):
    limit = fields.Integer(load_default=10, validate=RANK_LIMIT)


class AnalyticsArgs(WindowArgs):
    range = fields.String(load_default="last_30d", validate=validate.OneOf(WINDOWS))


class LimitArgs(StrictSchema):
    limit = fields.Integer(load_default=10, validate=RANK_LIMIT)


class GainSchema(StrictSchema):
    lead_id = fields.String()
    gain = fields.Integer(metadata={"description": "the score's net rise over the range"})
    changes = fields.Integer(metadata={"description": "events in the range that changed the score"})
    score = fields.Integer(metadata={"description": "now"})
    level = fields.Nested(LevelRefSchema, allow_none=True)


class TopLeadSchema(StrictSchema):
    lead_id = fields.String()
    score = fields.Integer()
    level = fields.Nested(LevelRefSchema, allow_none=True)
    last_event_at = UTCDateTime(allow_none=True)


class TypeCountSchema(StrictSchema):
    event_type = fields.String()
    events = fields.Integer()
    leads = fields.Integer(metadata={"description": "distinct leads"})
    points = fields.Integer(metadata={"description": "what they gave the primary score"})


class TotalsSchema(StrictSchema):
    events = fields.Integer()
    leads = fields.Integer(metadata={"description": "distinct leads with an event"})
    event_types = fields.Integer()
    scored = fields.Integer()
    suppressed = fields.Integer()
    pending = fields.Integer()
    points = fields.Integer(metadata={"description": "what the events gave the primary score"})


class EventStatsSchema(StrictSchema):
    last_24h = fields.Nested(TotalsSchema)
    top_events = fields.List(fields.Nested(TypeCountSchema), metadata={"description": "the last 24 hours' ten"})


class AnalyticsSchema(StrictSchema):
    range = fields.String()
    start = UTCDateTime()
    end = UTCDateTime(allow_none=True, metadata={"description": "null: up to now"})
    totals = fields.Nested(TotalsSchema)
    by_type = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(TypeCountSchema),
        metadata={"description": f"event type -> its counts, the {TOP_TYPES} most frequent types"},
    )


def _leveled(row) -> dict:
    return {**row._asdict(), "level": level_dump(row.level_id, row.level_name, row.level_color)}


@blp.route("/lead/<lead_id>/score-history", methods=["GET"], aliases=("/leads/<lead_id>/score-history",))
@blp.arguments(ScoreHistoryArgs, location="query")
@blp.response(200, ScoreHistorySchema)
def score_history(args, lead_id):
    """The lead's score hour by hour over the last `days` (1 to 90), the primary ruleset's unless ruleset_id names
    another; system DECAY events count as changes. Rescoring (publishing, merging, late events) rewrites history as
    the rules now score the stored events."""
    lead = get_lead(lead_id)
    session = db()
    ruleset_id = args.get("ruleset_id") or primary_ruleset(session, lead.unit_id) or ""
    if "ruleset_id" in args and args["ruleset_id"] not in {r.id for r in lead_ops.rulesets(session, lead.unit_id)}:
        raise not_found("ruleset")
    now = utcnow()
    start = window_start(now, args["days"])
    start_score, points = lead_history(session, lead.pk, ruleset_id, start) if ruleset_id else (0, [])
    return {
        "lead_id": lead.lead_id,
        "ruleset_id": ruleset_id,
        "days": args["days"],
        "resolution": "hour",
        "start": start,
        "end": now,
        "start_score": start_score,
        "points": [vars(p) for p in points],
    }


@blp.route("/score-gains", methods=["GET"])
@blp.arguments(GainsArgs, location="query")
@blp.response(200, GainSchema(many=True))
def gains(args):
    """The leads whose primary score rose most over the range (decay counted), largest gain first."""
    session = db()
    unit_id = current_unit()
    ruleset_id = primary_ruleset(session, unit_id)
    if ruleset_id is None:
        return []
    start, end = range_start(args["range"], utcnow())
    return [_leveled(r) for r in score_gains(session, unit_id, ruleset_id, start, end, args["limit"])]


@blp.route("/top-leads", methods=["GET"])
@blp.arguments(LimitArgs, location="query")
@blp.response(200, TopLeadSchema(many=True))
def top(args):
    """The OU's highest-scoring leads now, highest first."""
    return [_leveled(r) for r in top_leads(db(), current_unit(), args["limit"])]


@blp.route("/event-stats", methods=["GET"])
@blp.response(200, EventStatsSchema)
def event_stats():
    """The last 24 hours' events (system DECAY events left out): totals, and the ten most frequent types."""
    session = db()
    unit_id = current_unit()
    start, _ = range_start("last_24h", utcnow())
    activity = event_activity(session, unit_id, primary_ruleset(session, unit_id), start, None, TOP_EVENTS)
    return {"last_24h": activity.totals, "top_events": activity.by_type}


@blp.route("/events-analytics", methods=["GET"])
@blp.arguments(AnalyticsArgs, location="query")
@blp.response(200, AnalyticsSchema)
def events_analytics(args):
    """The range's events (system DECAY events left out): totals, and counts by type."""
    session = db()
    unit_id = current_unit()
    start, end = range_start(args["range"], utcnow())
    activity = event_activity(session, unit_id, primary_ruleset(session, unit_id), start, end, TOP_TYPES)
    return {
        "range": args["range"],
        "start": start,
        "end": end,
        "totals": activity.totals,
        "by_type": {t["event_type"]: t for t in activity.by_type},
    }
