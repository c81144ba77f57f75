"""One lead: its detail, score and why it has it, aliases, metadata (PUT replaces, PATCH merges), activity, deletion."""

from __future__ import annotations

import logging

from flask import jsonify
from marshmallow import fields, validate

from models import lead_ops
from models.base import utcnow
from models.explain import explain_lead
from models.lead_delete import latest_deletion, request_deletion
from models.lead_identity import aliases_of, primary_emails
from models.lead_metadata import merged_metadata
from models.leads import Lead, LeadDeletion
from models.time_ranges import RANGES, range_start
from webapp.app_state import db, state
from webapp.auth import current_unit
from webapp.blueprint import Blueprint
from webapp.errors import ApiError, not_found
from webapp.representations import (
    SCORE_BOUND,
    DecayForecastSchema,
    EventSchema,
    LeadSchema,
    LeadScoresSchema,
    LevelRefSchema,
    decay_forecast,
    event_dump,
    get_lead,
    level_dump,
)
from webapp.schema_base import StrictSchema, UTCDateTime, rfc3339
from webapp.services.leads import set_metadata
from worker.jobs import enqueue_lead_deletion

log = logging.getLogger("leadpulse.leads")
MAX_EXPLAIN_HOURS = 24 * 366
blp = Blueprint("lead", __name__, description="One lead: detail, score, aliases, metadata, activity, deletion")


class ScoreQuery(StrictSchema):
    ruleset_id = fields.String(validate=validate.Length(min=1, max=36))


class ExplainArgs(StrictSchema):
    hours = fields.Integer(
        load_default=24,
        validate=validate.Range(min=1, max=MAX_EXPLAIN_HOURS),
        metadata={"description": "the window of top_drivers and decay_applied, in hours back from now"},
    )


class DriverSchema(StrictSchema):
    event_type = fields.String()
    rule_id = fields.String(allow_none=True, metadata={"description": "the rule, or for DECAY the decay rule"})
    points = fields.Integer(
        metadata={"description": "the rule's published weight times count (decay: the points taken)"}
    )
    count = fields.Integer()


class SnapshotRuleSchema(StrictSchema):
    ruleset_id = fields.String()
    rule_id = fields.String()
    event_type = fields.String()
    weight = fields.Integer()
    active = fields.Boolean()
    start_at = fields.String(allow_none=True)
    end_at = fields.String(allow_none=True)


class LedgerPartSchema(StrictSchema):
    kind = fields.String(metadata={"description": "rule, decay, or floor (what the floor at 0 added back)"})
    points = fields.Integer()
    count = fields.Integer(metadata={"description": "deltas of this rule; for floor, the deltas the floor changed"})
    rule_id = fields.String(allow_none=True)
    event_type = fields.String(allow_none=True)
    weight = fields.Integer(allow_none=True)


class LedgerSchema(StrictSchema):
    ruleset_id = fields.String()
    name = fields.String()
    is_primary = fields.Boolean()
    status = fields.String()
    score = fields.Integer(metadata={"description": "the ruleset's stored score: the parts' points sum to it"})
    parts = fields.List(fields.Nested(LedgerPartSchema))


class ExplanationSchema(StrictSchema):
    lead_id = fields.String()
    ruleset_id = fields.String(allow_none=True, metadata={"description": "the ruleset top_drivers are read from"})
    score = fields.Integer()
    range_hours = fields.Integer()
    top_drivers = fields.List(fields.Nested(DriverSchema))
    snapshot = fields.List(fields.Nested(SnapshotRuleSchema))
    surge_boost = fields.List(fields.Dict())
    surge_total = fields.Integer()
    surge_event_count = fields.Integer()
    decay_applied = fields.Integer(metadata={"description": "points decay took in the window (0 or less)"})
    ledger = fields.List(fields.Nested(LedgerSchema), metadata={"description": "every ruleset, primary first"})
    decay_forecast = fields.Nested(
        DecayForecastSchema,
        allow_none=True,
        metadata={"description": "as in GET /lead/{id}: null unless decay moves it down"},
    )


class MetadataSchema(StrictSchema):
    metadata = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=200)), required=True)


class ActivityArgs(StrictSchema):
    range = fields.String(load_default="last_7d", validate=validate.OneOf([*RANGES, "custom"]))
    start = UTCDateTime()
    end = UTCDateTime()
    channel = fields.String(
        load_default="all", validate=validate.OneOf(["all", "web", "email", "slack", "webinar", "crm", "system"])
    )
    minScore = fields.Integer(validate=validate.Range(min=0, max=SCORE_BOUND.max))
    hasDelta = fields.String(validate=validate.OneOf(["1", "true", "0", "false"]))


class LeadAliasSchema(StrictSchema):
    alias_kind = fields.String()
    value = fields.String(metadata={"description": "normalized (emails lowercased)"})
    created_at = UTCDateTime()


FORECAST = "when decay takes the lead below its level unless it is active first; null if it never does"


class LeadDetailSchema(LeadSchema):
    level = fields.Nested(LevelRefSchema, allow_none=True)
    aliases = fields.List(fields.Nested(LeadAliasSchema))
    primary_email = fields.String(allow_none=True)
    decay_forecast = fields.Nested(DecayForecastSchema, allow_none=True, metadata={"description": FORECAST})


class LeadDetailAnswerSchema(StrictSchema):
    lead = fields.Nested(LeadDetailSchema)
    account = fields.Dict(allow_none=True, metadata={"description": "always null: LeadPulse keeps no accounts"})


class LeadAnswerSchema(StrictSchema):
    lead = fields.Nested(LeadSchema)


class ScoreAnswerSchema(LeadScoresSchema):
    decay_forecast = fields.Nested(DecayForecastSchema, allow_none=True, metadata={"description": FORECAST})


class DeletionSchema(StrictSchema):
    lead_id = fields.String()
    status = fields.String(
        validate=validate.OneOf(["active", "pending", "completed", "failed"]),
        metadata={"description": "active: no deletion was asked for"},
    )
    requested_at = UTCDateTime(metadata={"description": "not when active"})
    completed_at = UTCDateTime(allow_none=True, metadata={"description": "not when active"})
    error = fields.String(metadata={"description": "why it failed"})


class ActivityEventSchema(EventSchema):
    score_delta = fields.Integer(allow_none=True, metadata={"description": "what it added to the primary score"})


class TimelineItemSchema(StrictSchema):
    type = fields.String(validate=validate.OneOf(["event"]))
    timestamp = UTCDateTime()
    id = fields.String()
    title = fields.String(metadata={"description": "the event type"})
    score_delta = fields.Integer(allow_none=True)


class ActivitySchema(StrictSchema):
    lead_id = fields.String()
    events = fields.List(fields.Nested(ActivityEventSchema), metadata={"description": "newest first"})
    orders = fields.List(fields.Dict(), validate=validate.Length(max=0), metadata={"description": "always empty"})
    timeline = fields.List(fields.Nested(TimelineItemSchema))


def alias_dump(aliases) -> list[dict]:
    return [{"alias_kind": a.kind, "value": a.value, "created_at": rfc3339(a.created_at)} for a in aliases]


def _level_of(lead: Lead) -> dict | None:
    level = lead_ops.level_of(db(), lead)
    return level_dump(level.id, level.name, level.color) if level else None


@blp.route("/lead/<lead_id>", methods=["GET"], aliases=("/leads/<lead_id>",))
@blp.alt_response(200, schema=LeadDetailAnswerSchema, success=True)
def lead_detail(lead_id):
    lead = get_lead(lead_id)
    body = LeadSchema().dump(lead)
    body["level"] = _level_of(lead)
    body["aliases"] = alias_dump(aliases_of(db(), lead.pk))
    body["primary_email"] = primary_emails(db(), [lead.pk]).get(lead.pk)
    body["decay_forecast"] = decay_forecast(lead)
    return jsonify({"lead": body, "account": None})


@blp.route("/score/<lead_id>", methods=["GET"], aliases=("/leads/<lead_id>/score",))
@blp.arguments(ScoreQuery, location="query")
@blp.alt_response(200, schema=ScoreAnswerSchema, success=True)
def lead_score(args, lead_id):
    """Primary score by default; a named ruleset's on request; the highest when there is no primary."""
    lead = get_lead(lead_id)
    try:
        ruleset_id, score, scores = lead_ops.lead_score(db(), lead, args.get("ruleset_id"))
    except lead_ops.UnknownRuleset:
        raise not_found("ruleset")
    return jsonify(
        {
            "lead_id": lead.lead_id,
            "score": score,
            "ruleset_id": ruleset_id,
            "engagement_scores": scores,
            "profile_scores": {},
            "level": _level_of(lead),
            "decay_forecast": decay_forecast(lead),
        }
    )


@blp.route("/lead/<lead_id>/score-explain", methods=["GET"])
@blp.arguments(ExplainArgs, location="query")
@blp.response(200, ExplanationSchema)
def score_explain(args, lead_id):
    """Why the lead has its score: recent top drivers, the published weights, and a ledger per ruleset that sums to it."""
    lead = get_lead(lead_id)
    explanation = explain_lead(db(), lead, args["hours"])
    explanation.decay_forecast = decay_forecast(lead)
    return explanation


@blp.route("/lead/<lead_id>/aliases", methods=["GET"], aliases=("/leads/<lead_id>/aliases",))
@blp.alt_response(200, schema=LeadAliasSchema(many=True), success=True)
def aliases(lead_id):
    return jsonify(alias_dump(aliases_of(db(), get_lead(lead_id).pk)))


def _save_metadata(lead: Lead, metadata: dict):
    set_metadata(lead, metadata)
    db().commit()
    return jsonify({"lead": LeadSchema().dump(lead)})


def _locked(lead_id: str) -> Lead:
    """The lead row locked for this transaction: two concurrent merges never drop each other's keys."""
    lead = get_lead(lead_id)
    db().refresh(lead, with_for_update=True)
    return lead


@blp.route("/lead/<lead_id>", methods=["PUT"], aliases=("/leads/<lead_id>",))
@blp.arguments(MetadataSchema)
@blp.alt_response(200, schema=LeadAnswerSchema, success=True)
def replace_metadata(data, lead_id):
    return _save_metadata(_locked(lead_id), data["metadata"])


@blp.route("/lead/<lead_id>/metadata", methods=["PATCH"], aliases=("/leads/<lead_id>/metadata",))
@blp.arguments(MetadataSchema)
@blp.alt_response(200, schema=LeadAnswerSchema, success=True)
def merge_metadata(data, lead_id):
    """Keys given are set; a key given as null is removed; others stay."""
    lead = _locked(lead_id)
    return _save_metadata(lead, merged_metadata(lead.metadata_, data["metadata"]))


@blp.route("/lead/<lead_id>", methods=["DELETE"], aliases=("/leads/<lead_id>",))
@blp.alt_response(200, schema=DeletionSchema, success=True)
def delete_lead(lead_id):
    """Asynchronous: the lead, its events and scores go in a job; GET /lead/{id}/deletion-status follows it."""
    lead = get_lead(lead_id)
    session = db()
    deletion = request_deletion(session, lead)
    session.commit()
    try:
        enqueue_lead_deletion(state().redis, state().settings.queue_name, deletion.id)
    except Exception as exc:  # Redis down: the sweep enqueues pending deletions
        log.warning("could not enqueue the lead deletion (%s); the sweep will", exc.__class__.__name__)
    return jsonify(_deletion_view(deletion))


@blp.route("/lead/<lead_id>/deletion-status", methods=["GET"], aliases=("/leads/<lead_id>/deletion-status",))
@blp.alt_response(200, schema=DeletionSchema, success=True)
def deletion_status(lead_id):
    deletion = latest_deletion(db(), current_unit(), lead_id)
    if deletion is None:
        get_lead(lead_id)  # 404 unless the lead exists
        return jsonify({"lead_id": lead_id, "status": "active"})
    return jsonify(_deletion_view(deletion))


def _deletion_view(d: LeadDeletion) -> dict:
    return {
        "lead_id": d.lead_id,
        "status": d.status,
        "requested_at": rfc3339(d.requested_at),
        "completed_at": rfc3339(d.completed_at),
        **({"error": d.error} if d.error else {}),
    }


@blp.route("/lead/<lead_id>/activity", methods=["GET"], aliases=("/leads/<lead_id>/activity",))
@blp.arguments(ActivityArgs, location="query")
@blp.alt_response(200, schema=ActivitySchema, success=True)
def activity(args, lead_id):
    """The lead's events with what each added to the primary score, newest first, and the same as a timeline."""
    lead = get_lead(lead_id)
    if args["range"] == "custom":
        if "start" not in args or "end" not in args:
            raise ApiError(
                400,
                "validation_error",
                "range=custom needs start and end",
                {"start" if "start" not in args else "end": ["required"]},
            )
        start, end = args["start"], args["end"]
        if start > end:
            raise ApiError(400, "validation_error", "end must not be before start", {"end": ["before start"]})
    else:
        start, end = range_start(args["range"], utcnow())
    has_delta = {"1": True, "true": True, "0": False, "false": False}.get(args.get("hasDelta"))
    rows = lead_ops.activity(
        db(),
        lead,
        start,
        end,
        end_inclusive=args["range"] == "custom",
        channel=None if args["channel"] == "all" else args["channel"],
        has_delta=has_delta,
        min_delta=args.get("minScore"),
    )
    events = [{**item, "score_delta": row.delta} for item, row in zip(event_dump(rows), rows)]
    timeline = [
        {
            "type": "event",
            "timestamp": e["timestamp"],
            "id": e["id"],
            "title": e["event_type"],
            "score_delta": e["score_delta"],
        }
        for e in events
    ]
    return {"lead_id": lead.lead_id, "events": events, "orders": [], "timeline": timeline}
