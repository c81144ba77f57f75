"""Leads, their scores and levels: list with the reference's filters, detail, create, batch scores."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, time, timedelta, timezone

from flask import jsonify
from webapp.blueprint import Blueprint
from marshmallow import fields, validate
from sqlalchemy import func, or_, select

from models.base import utcnow
from models.leads import Lead, aliases_of, primary_emails
from models.levels import EngagementLevel
from models.reclassify import classify_new_lead
from models.dialect import insert_for
from models.scoring import LeadScore, Ruleset
from webapp.auth import current_unit, principal
from webapp.crud import paginate, scoped
from webapp.errors import ApiError, not_found
from webapp.schema_base import PageArgs, StrictSchema, UTCDateTime, rfc3339
from webapp.app_state import db

blp = Blueprint("leads", __name__, description="Leads and scores")

RANGES = ("all", "today", "yesterday", "last_24h", "last_7d", "last_30d", "last_90d")
SORTS = {
    "score": (Lead.score.asc(), Lead.lead_id),
    "-score": (Lead.score.desc(), Lead.lead_id),
    "last_event_at": (Lead.last_event_at.asc(), Lead.lead_id),
    "-last_event_at": (Lead.last_event_at.desc(), Lead.lead_id),
    "created_at": (Lead.created_at.asc(), Lead.lead_id),
    "-created_at": (Lead.created_at.desc(), Lead.lead_id),
    "lead_id": (Lead.lead_id,),
}
LEAD_COLUMNS = (
    Lead.pk, Lead.org_id, Lead.unit_id, Lead.lead_id, Lead.score, Lead.last_event_at, Lead.created_at, Lead.updated_at,
    Lead.owner_name, Lead.level_id, EngagementLevel.name.label("level_name"), EngagementLevel.color.label("level_color"),
)


SCORE_BOUND = validate.Range(min=-(2**62), max=2**62)


class LeadListArgs(PageArgs):
    min_score = fields.Integer(validate=SCORE_BOUND)
    max_score = fields.Integer(validate=SCORE_BOUND)
    event_type = fields.String(validate=validate.Length(min=1, max=100))
    last_active = fields.String(validate=validate.OneOf(["any", "7d", "30d"]))
    range = fields.String(validate=validate.OneOf(RANGES))
    level = fields.String(validate=validate.Length(min=1, max=100), metadata={"description": "level name or id, or 'none'"})
    sort = fields.String(validate=validate.OneOf(list(SORTS)), load_default="-score")


class LeadCreateSchema(StrictSchema):
    id = fields.String(required=True, validate=validate.Length(min=1, max=200))
    metadata = fields.Dict(keys=fields.String(), load_default=dict)
    account_id = fields.String(allow_none=True, validate=validate.Length(max=200))


class LeadSchema(StrictSchema):
    id = fields.String(attribute="lead_id")
    org_id = fields.String()
    unit_id = fields.String()
    account_id = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)
    owner_name = fields.String(allow_none=True)
    created_at = UTCDateTime()
    updated_at = UTCDateTime()
    merged_into = fields.String(allow_none=True)
    metadata = fields.Dict(attribute="metadata_")
    score = fields.Integer()
    last_event_at = UTCDateTime(allow_none=True)


class ScoreQuery(StrictSchema):
    ruleset_id = fields.String(validate=validate.Length(min=1, max=36))


class BatchScoresSchema(StrictSchema):
    lead_ids = fields.List(fields.String(validate=validate.Length(min=1, max=200)), required=True,
                           validate=validate.Length(min=1, max=500))
    ruleset = fields.String(validate=validate.Length(min=1, max=100), load_default="primary")


def range_start(name: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    """Named ranges of the reference as [start, end) in UTC."""
    midnight = datetime.combine(now.date(), time.min, tzinfo=timezone.utc)
    return {
        "all": (None, None),
        "today": (midnight, None),
        "yesterday": (midnight - timedelta(days=1), midnight),
        "last_24h": (now - timedelta(hours=24), None),
        "last_7d": (now - timedelta(days=7), None),
        "last_30d": (now - timedelta(days=30), None),
        "last_90d": (now - timedelta(days=90), None),
    }[name]


def _rulesets(unit_id: str):
    return db().execute(select(Ruleset.id, Ruleset.name, Ruleset.is_primary).where(Ruleset.unit_id == unit_id)).all()


def lead_dump(rows) -> list[dict]:
    """The reference's lead shape plus level, with per-ruleset scores fetched in one query."""
    if not rows:
        return []
    unit_id = current_unit()
    rulesets = _rulesets(unit_id)
    names = {r.id: r.name for r in rulesets}
    primary = next((r for r in rulesets if r.is_primary), None)
    scores: dict[int, dict[str, int]] = defaultdict(dict)
    for s in db().execute(
        select(LeadScore.lead_pk, LeadScore.ruleset_id, LeadScore.score).where(LeadScore.lead_pk.in_([r.pk for r in rows]))
    ):
        scores[s.lead_pk][s.ruleset_id] = s.score
    emails = primary_emails(db(), [r.pk for r in rows])
    out = []
    for r in rows:
        out.append({
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
            "level": {"id": r.level_id, "name": r.level_name, "color": r.level_color} if r.level_id else None,
        })
    return out


def _level_filter(unit_id: str, value: str):
    if value.lower() in ("none", "unclassified"):
        return Lead.level_id.is_(None)
    level_id = db().execute(
        select(EngagementLevel.id).where(
            EngagementLevel.unit_id == unit_id, or_(EngagementLevel.id == value, func.lower(EngagementLevel.name) == value.lower())
        )
    ).scalar()
    if level_id is None:
        raise ApiError(400, "validation_error", f"unknown level '{value}'", {"level": ["no such level in this OU"]})
    return Lead.level_id == level_id


@blp.route("/leads", methods=["GET"])
@blp.arguments(LeadListArgs, location="query")
def list_leads(args):
    unit_id = current_unit()
    stmt = (
        select(*LEAD_COLUMNS)
        .outerjoin(EngagementLevel, EngagementLevel.id == Lead.level_id)
        .where(Lead.unit_id == unit_id, Lead.merged_into.is_(None))
    )
    now = utcnow()
    if "min_score" in args:
        stmt = stmt.where(Lead.score >= args["min_score"])
    if "max_score" in args:
        stmt = stmt.where(Lead.score <= args["max_score"])
    if "event_type" in args:
        stmt = stmt.where(Lead.last_event_type == args["event_type"])
    if args.get("last_active") in ("7d", "30d"):
        stmt = stmt.where(Lead.last_event_at >= now - timedelta(days=int(args["last_active"][:-1])))
    if "range" in args:
        start, end = range_start(args["range"], now)
        if start is not None:
            stmt = stmt.where(Lead.created_at >= start)
        if end is not None:
            stmt = stmt.where(Lead.created_at < end)
    if "level" in args:
        stmt = stmt.where(_level_filter(unit_id, args["level"]))
    return paginate(stmt, args, dump=lead_dump, key="leads", default_limit=25, order_by=SORTS[args["sort"]])


def get_lead(lead_id: str) -> Lead:
    lead = db().execute(scoped(Lead).where(Lead.lead_id == lead_id)).scalar()
    if lead is None:
        raise not_found("lead")
    return lead


@blp.route("/leads", methods=["POST"], statuses=(409,))
@blp.arguments(LeadCreateSchema)
@blp.response(201, LeadSchema)
def create_lead(data):
    p = principal()
    session = db()
    unit_id = current_unit()
    now = utcnow()
    pk = session.execute(
        insert_for(session, Lead)
        .values(org_id=p.org_id, unit_id=unit_id, lead_id=data["id"], metadata=data["metadata"],
                account_id=data.get("account_id"), score=0, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["unit_id", "lead_id"])
        .returning(Lead.pk)
    ).scalar()
    if pk is None:  # it exists, perhaps created a moment ago by an ingest
        session.rollback()
        raise ApiError(409, "conflict", f"lead '{data['id']}' already exists", {"id": ["already exists"]})
    lead = session.get(Lead, pk)
    classify_new_lead(session, lead)
    session.commit()
    return lead


@blp.route("/lead/<lead_id>", methods=["GET"])
@blp.route("/leads/<lead_id>", methods=["GET"], endpoint="lead_detail_alias")
def lead_detail(lead_id):
    lead = get_lead(lead_id)
    body = LeadSchema().dump(lead)
    body["level"] = _level_of(lead)
    body["aliases"] = alias_dump(aliases_of(db(), lead.pk))
    body["primary_email"] = primary_emails(db(), [lead.pk]).get(lead.pk)
    return jsonify({"lead": body, "account": None})


def alias_dump(aliases) -> list[dict]:
    return [{"alias_kind": a.kind, "value": a.value, "created_at": rfc3339(a.created_at)} for a in aliases]


def _level_of(lead: Lead) -> dict | None:
    if lead.level_id is None:
        return None
    lv = db().get(EngagementLevel, lead.level_id)
    return {"id": lv.id, "name": lv.name, "color": lv.color} if lv else None


@blp.route("/score/<lead_id>", methods=["GET"])
@blp.route("/leads/<lead_id>/score", methods=["GET"], endpoint="lead_score_alias")
@blp.arguments(ScoreQuery, location="query")
def lead_score(args, lead_id):
    """Primary score by default; a named ruleset's on request; the highest when there is no primary."""
    lead = get_lead(lead_id)
    unit_id = current_unit()
    rulesets = {r.id: r for r in _rulesets(unit_id)}
    scores = dict(db().execute(select(LeadScore.ruleset_id, LeadScore.score).where(LeadScore.lead_pk == lead.pk)).all())
    if "ruleset_id" in args:
        if args["ruleset_id"] not in rulesets:
            raise not_found("ruleset")
        ruleset_id, score = args["ruleset_id"], scores.get(args["ruleset_id"], 0)
    else:
        primary = next((r.id for r in rulesets.values() if r.is_primary), None)
        if primary:
            ruleset_id, score = primary, lead.score
        elif scores:
            ruleset_id, score = max(scores.items(), key=lambda kv: kv[1])
        else:
            ruleset_id, score = "", 0
    return jsonify({
        "lead_id": lead.lead_id,
        "score": score,
        "ruleset_id": ruleset_id,
        "engagement_scores": scores,
        "profile_scores": {},
        "level": _level_of(lead),
    })


@blp.route("/leads/scores", methods=["POST"], statuses=(404,))
@blp.arguments(BatchScoresSchema)
def batch_scores(data):
    unit_id = current_unit()
    wanted = list(dict.fromkeys(data["lead_ids"]))
    ruleset = data["ruleset"]
    rulesets = _rulesets(unit_id)
    if ruleset == "primary":
        chosen = next((r for r in rulesets if r.is_primary), None)
    else:
        chosen = next((r for r in rulesets if ruleset in (r.id, r.name)), None)
        if chosen is None:
            raise not_found("ruleset")
    leads = dict(db().execute(select(Lead.lead_id, Lead.pk).where(Lead.unit_id == unit_id, Lead.lead_id.in_(wanted))).all())
    scores = {}
    if chosen and leads:
        scores = dict(db().execute(
            select(LeadScore.lead_pk, LeadScore.score).where(LeadScore.ruleset_id == chosen.id, LeadScore.lead_pk.in_(list(leads.values())))
        ).all())
    return jsonify([
        {"lead_id": lid, "score": scores.get(leads.get(lid), 0), "ruleset_id": chosen.id if chosen else "", "found": lid in leads}
        for lid in wanted
    ])
