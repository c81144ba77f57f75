"""The leads collection: list with the reference's filters, search, create, batch scores, merge."""

from __future__ import annotations

from flask import jsonify
from marshmallow import fields, validate

from models import lead_ops
from models.base import utcnow
from models.lead_identity import primary_emails
from models.lead_ops import SORTS, UnknownLevel, UnknownRuleset
from models.merge import MergeError, merge_leads
from models.time_ranges import RANGES
from webapp.app_state import db, state
from webapp.auth import current_unit, principal
from webapp.blueprint import Blueprint
from webapp.crud import page_doc, paginate
from webapp.errors import ApiError, not_found
from webapp.representations import SCORE_BOUND, LeadMatchSchema, LeadSchema, LeadScoresSchema, level_dump
from webapp.schema_base import PageArgs, StrictSchema, UTCDateTime, rfc3339
from webapp.services.lead_ids import LEAD_ID, LEAD_ID_RULE
from webapp.services.leads import check_metadata
from worker.jobs import try_kick

blp = Blueprint("leads", __name__, description="Leads: list, search, create, batch scores, merge")
SEARCH_LIMIT = 10


class LeadListArgs(PageArgs):
    min_score = fields.Integer(validate=SCORE_BOUND)
    max_score = fields.Integer(validate=SCORE_BOUND)
    event_type = fields.String(validate=validate.Length(min=1, max=100))
    last_active = fields.String(validate=validate.OneOf(["any", "7d", "30d"]))
    range = fields.String(validate=validate.OneOf(RANGES))
    level = fields.String(
        validate=validate.Length(min=1, max=100), metadata={"description": "level name or id, or 'none'"}
    )
    sort = fields.String(validate=validate.OneOf(list(SORTS)), load_default="-score")


class LeadCreateSchema(StrictSchema):
    id = fields.String(required=True, validate=LEAD_ID, metadata={"description": LEAD_ID_RULE})
    metadata = fields.Dict(keys=fields.String(), load_default=dict)
    account_id = fields.String(allow_none=True, validate=validate.Length(max=200))


class SearchArgs(StrictSchema):
    q = fields.String(required=True, validate=validate.Length(min=2, max=200))


class BatchScoresSchema(StrictSchema):
    lead_ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=200)), required=True, validate=validate.Length(min=1, max=500)
    )
    ruleset = fields.String(validate=validate.Length(min=1, max=100), load_default="primary")


class MergeSchema(StrictSchema):
    # The survivor must be reachable; a source may be any lead, so one stored under an id no longer accepted can
    # still be merged into a reachable one.
    targetLeadId = fields.String(required=True, validate=LEAD_ID, metadata={"description": LEAD_ID_RULE})
    sourceLeadIds = fields.List(
        fields.String(validate=validate.Length(min=1, max=200)), required=True, validate=validate.Length(min=1, max=100)
    )
    truncate = fields.Dict(
        load_default=dict, metadata={"description": 'truncation policy; only {"policy": "none"} (the default)'}
    )


class LeadRowSchema(LeadScoresSchema):
    """A lead as lead_dump shows it in lists: its score is by the primary ruleset."""

    org_id = fields.String()
    primary_email = fields.String(allow_none=True)
    last_event_at = UTCDateTime(allow_none=True)
    created_at = UTCDateTime()
    updated_at = UTCDateTime()
    owner_name = fields.String(allow_none=True)
    ruleset_names = fields.Dict(keys=fields.String(), values=fields.String(), metadata={"description": "id -> name"})
    engagement_primary_ruleset_name = fields.String()
    profile_primary_ruleset_name = fields.String()


LEADS = page_doc(LeadRowSchema, "leads")


class BatchScoreSchema(StrictSchema):
    lead_id = fields.String()
    score = fields.Integer(metadata={"description": "0 for a lead not found"})
    ruleset_id = fields.String(metadata={"description": "empty when the OU has no primary ruleset"})
    found = fields.Boolean()


class RescoreSchema(StrictSchema):
    status = fields.String(validate=validate.OneOf(["queued"]))
    leads = fields.Integer()


class MergedSchema(StrictSchema):
    target = fields.Nested(LeadSchema)
    mergedSources = fields.List(fields.String())
    movedEvents = fields.Integer()
    movedAliases = fields.Integer()
    truncatedEvents = fields.Integer()
    rescore = fields.Nested(RescoreSchema)


def lead_dump(rows) -> list[dict]:
    """The reference's lead shape plus level, with per-ruleset scores fetched in one query."""
    if not rows:
        return []
    session = db()
    all_rulesets = lead_ops.rulesets(session, current_unit())
    names = {r.id: r.name for r in all_rulesets}
    primary = next((r for r in all_rulesets if r.is_primary), None)
    scores = lead_ops.scores_by_lead(session, [r.pk for r in rows])
    emails = primary_emails(session, [r.pk for r in rows])
    out = []
    for r in rows:
        out.append(
            {
                "org_id": r.org_id,
                "lead_id": r.lead_id,
                "primary_email": emails.get(r.pk),
                "score": r.score,
                "ruleset_id": primary.id if primary else "",
                "last_event_at": rfc3339(r.last_event_at),
                "created_at": rfc3339(r.created_at),
                "updated_at": rfc3339(r.updated_at),
                "owner_name": r.owner_name,
                "engagement_scores": scores.get(r.pk, {}),
                "profile_scores": {},
                "ruleset_names": names,
                "engagement_primary_ruleset_name": primary.name if primary else "",
                "profile_primary_ruleset_name": "",
                "level": level_dump(r.level_id, r.level_name, r.level_color),
            }
        )
    return out


@blp.route("/leads", methods=["GET"])
@blp.arguments(LeadListArgs, location="query")
@blp.alt_response(200, schema=LEADS, success=True)
def list_leads(args):
    try:
        stmt = lead_ops.list_statement(db(), current_unit(), args, utcnow())
    except UnknownLevel as exc:
        raise ApiError(400, "validation_error", f"unknown level '{exc}'", {"level": ["no such level in this OU"]})
    return paginate(stmt, args, dump=lead_dump, key="leads", default_limit=25, order_by=SORTS[args["sort"]])


@blp.route("/leads", methods=["POST"], need="ingest", statuses=(409,))
@blp.arguments(LeadCreateSchema)
@blp.response(201, LeadSchema)
def create_lead(data):
    check_metadata(data["metadata"])
    session = db()
    lead = lead_ops.create_lead(
        session, principal().org_id, current_unit(), data["id"], data["metadata"], data.get("account_id")
    )
    if lead is None:
        session.rollback()
        raise ApiError(409, "conflict", f"lead '{data['id']}' already exists", {"id": ["already exists"]})
    session.commit()
    return lead


@blp.route("/leads/search", methods=["GET"])
@blp.arguments(SearchArgs, location="query")
@blp.alt_response(200, schema=LeadMatchSchema(many=True), description="at most 10, highest score first", success=True)
def search(args):
    """Up to 10 leads whose id, or any alias, starts with q (case-insensitive for aliases, which are stored lowercased)."""
    q = args["q"].strip()
    if len(q) < 2:
        raise ApiError(400, "validation_error", "q must have at least 2 characters", {"q": ["at least 2 characters"]})
    rows = lead_ops.search(db(), current_unit(), q, SEARCH_LIMIT)
    return jsonify([{"lead_id": r.lead_id, "score": r.score, "level": level_dump(r.id, r.name, r.color)} for r in rows])


@blp.route("/leads/scores", methods=["POST"], need="read", statuses=(404,))
@blp.arguments(BatchScoresSchema)
@blp.alt_response(
    200, schema=BatchScoreSchema(many=True), description="one per distinct lead id, in order", success=True
)
def batch_scores(data):
    try:
        ruleset_id, found = lead_ops.batch_scores(db(), current_unit(), data["lead_ids"], data["ruleset"])
    except UnknownRuleset:
        raise not_found("ruleset")
    return jsonify(
        [{"lead_id": lid, "score": score, "ruleset_id": ruleset_id, "found": exists} for lid, score, exists in found]
    )


@blp.route("/leads/merge", methods=["POST"], statuses=(404, 409))
@blp.arguments(MergeSchema)
@blp.alt_response(200, schema=MergedSchema, success=True)
def merge(data):
    """Events and aliases move to the target, the sources are marked merged, the target is rescored (by the workers)."""
    policy = data["truncate"].get("policy", "none")
    if policy != "none" or set(data["truncate"]) - {"policy"}:
        raise ApiError(
            400,
            "validation_error",
            "only the truncation policy 'none' is supported",
            {"truncate": ["policy must be none"]},
        )
    session = db()
    try:
        out = merge_leads(session, current_unit(), data["targetLeadId"], data["sourceLeadIds"])
    except MergeError as exc:
        session.rollback()
        raise ApiError(
            exc.status,
            "not_found" if exc.status == 404 else "conflict" if exc.status == 409 else "validation_error",
            str(exc),
            {exc.field: [str(exc)]},
        )
    session.commit()
    try_kick(state())
    return jsonify(
        {
            "target": LeadSchema().dump(out.target),
            "mergedSources": out.merged,
            "movedEvents": out.moved_events,
            "movedAliases": out.moved_aliases,
            "truncatedEvents": 0,
            "rescore": {"status": "queued", "leads": 1},
        }
    )
