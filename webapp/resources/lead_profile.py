"""A lead's profile: search by id or alias, its aliases, its metadata (PUT replaces, PATCH merges), and deletion."""
from __future__ import annotations

import logging

from flask import jsonify
from marshmallow import fields, validate
from sqlalchemy import or_, select

from models.base import utcnow
from models.lead_delete import request_deletion
from models.merge import MergeError, merge_leads
from models.leads import Lead, LeadAlias, LeadDeletion, aliases_of, merged_metadata, metadata_size
from models.levels import EngagementLevel
from webapp.auth import current_unit
from webapp.blueprint import Blueprint
from webapp.errors import ApiError
from webapp.resources.leads import LeadSchema, alias_dump, get_lead
from webapp.schema_base import StrictSchema, rfc3339
from webapp.app_state import db, state
from worker.jobs import enqueue_lead_deletion, try_kick

log = logging.getLogger("leadpulse.leads")
blp = Blueprint("lead_profile", __name__, description="Lead search, aliases and metadata")
SEARCH_LIMIT = 10


class SearchArgs(StrictSchema):
    q = fields.String(required=True, validate=validate.Length(min=2, max=200))


class MetadataSchema(StrictSchema):
    metadata = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=200)), required=True)


def _like_prefix(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


@blp.route("/leads/search", methods=["GET"])
@blp.arguments(SearchArgs, location="query")
def search(args):
    """Up to 10 leads whose id, or any alias, starts with q (case-insensitive for aliases, which are stored lowercased)."""
    q = args["q"].strip()
    if len(q) < 2:
        raise ApiError(400, "validation_error", "q must have at least 2 characters", {"q": ["at least 2 characters"]})
    unit_id = current_unit()
    by_alias = select(LeadAlias.lead_pk).where(LeadAlias.unit_id == unit_id, LeadAlias.value.like(_like_prefix(q.lower()), escape="\\"))
    rows = db().execute(
        select(Lead.lead_id, Lead.score, EngagementLevel.id, EngagementLevel.name, EngagementLevel.color)
        .outerjoin(EngagementLevel, EngagementLevel.id == Lead.level_id)
        .where(Lead.unit_id == unit_id, Lead.merged_into.is_(None),
               or_(Lead.lead_id.like(_like_prefix(q), escape="\\"), Lead.pk.in_(by_alias)))
        .order_by(Lead.score.desc(), Lead.lead_id).limit(SEARCH_LIMIT)
    ).all()
    return jsonify([{"lead_id": r.lead_id, "score": r.score,
                     "level": {"id": r.id, "name": r.name, "color": r.color} if r.id else None} for r in rows])


@blp.route("/lead/<lead_id>/aliases", methods=["GET"])
@blp.route("/leads/<lead_id>/aliases", methods=["GET"], endpoint="lead_aliases_alias")
def aliases(lead_id):
    return jsonify(alias_dump(aliases_of(db(), get_lead(lead_id).pk)))


def set_metadata(lead: Lead, metadata: dict, field: str = "metadata") -> None:
    """Every write of a lead's metadata (API, Segment traits, HubSpot properties) stays under the same limit."""
    limit = state().settings.max_metadata_bytes
    if metadata_size(metadata) > limit:
        raise ApiError(413, "payload_too_large", f"{field}: the lead's metadata would exceed {limit // 1024} KB", {field: ["too large"]})
    lead.metadata_, lead.updated_at = metadata, utcnow()


def _save_metadata(lead: Lead, metadata: dict):
    set_metadata(lead, metadata)
    db().commit()
    return jsonify({"lead": LeadSchema().dump(lead)})


@blp.route("/lead/<lead_id>", methods=["PUT"])
@blp.route("/leads/<lead_id>", methods=["PUT"], endpoint="lead_put_alias")
@blp.arguments(MetadataSchema)
def replace_metadata(data, lead_id):
    return _save_metadata(_locked(lead_id), data["metadata"])


@blp.route("/lead/<lead_id>/metadata", methods=["PATCH"])
@blp.route("/leads/<lead_id>/metadata", methods=["PATCH"], endpoint="lead_patch_alias")
@blp.arguments(MetadataSchema)
def merge_metadata(data, lead_id):
    """Keys given are set; a key given as null is removed; others stay."""
    lead = _locked(lead_id)
    return _save_metadata(lead, merged_metadata(lead.metadata_, data["metadata"]))


def _locked(lead_id: str) -> Lead:
    """The lead row locked for this transaction: two concurrent merges never drop each other's keys."""
    lead = get_lead(lead_id)
    db().refresh(lead, with_for_update=True)
    return lead


@blp.route("/lead/<lead_id>", methods=["DELETE"])
@blp.route("/leads/<lead_id>", methods=["DELETE"], endpoint="lead_delete_alias")
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


@blp.route("/lead/<lead_id>/deletion-status", methods=["GET"])
@blp.route("/leads/<lead_id>/deletion-status", methods=["GET"], endpoint="lead_deletion_status_alias")
def deletion_status(lead_id):
    deletion = db().execute(select(LeadDeletion).where(LeadDeletion.unit_id == current_unit(), LeadDeletion.lead_id == lead_id)
                            .order_by(LeadDeletion.id.desc()).limit(1)).scalar()
    if deletion is None:
        get_lead(lead_id)  # 404 unless the lead exists
        return jsonify({"lead_id": lead_id, "status": "active"})
    return jsonify(_deletion_view(deletion))


def _deletion_view(d: LeadDeletion) -> dict:
    return {"lead_id": d.lead_id, "status": d.status, "requested_at": rfc3339(d.requested_at),
            "completed_at": rfc3339(d.completed_at), **({"error": d.error} if d.error else {})}


class MergeSchema(StrictSchema):
    targetLeadId = fields.String(required=True, validate=validate.Length(min=1, max=200))  # noqa: N815 (the reference's name)
    sourceLeadIds = fields.List(fields.String(validate=validate.Length(min=1, max=200)), required=True,  # noqa: N815
                                validate=validate.Length(min=1, max=100))
    truncate = fields.Dict(load_default=dict, metadata={"description": "truncation policy; only {\"policy\": \"none\"} (the default)"})


@blp.route("/leads/merge", methods=["POST"], statuses=(404, 409))
@blp.arguments(MergeSchema)
def merge(data):
    """Events and aliases move to the target, the sources are marked merged, the target is rescored (by the workers)."""
    policy = data["truncate"].get("policy", "none")
    if policy != "none" or set(data["truncate"]) - {"policy"}:
        raise ApiError(400, "validation_error", "only the truncation policy 'none' is supported", {"truncate": ["policy must be none"]})
    session = db()
    try:
        out = merge_leads(session, current_unit(), data["targetLeadId"], data["sourceLeadIds"])
    except MergeError as exc:
        session.rollback()
        raise ApiError(exc.status, "not_found" if exc.status == 404 else "conflict" if exc.status == 409 else "validation_error",
                       str(exc), {exc.field: [str(exc)]})
    session.commit()
    try_kick(state())
    return jsonify({"target": LeadSchema().dump(out.target), "mergedSources": out.merged, "movedEvents": out.moved_events,
                    "movedAliases": out.moved_aliases, "truncatedEvents": 0, "rescore": {"status": "queued", "leads": 1}})
