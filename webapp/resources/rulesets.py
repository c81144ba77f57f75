"""Engagement rulesets and their rules; publishing rescores the OU from stored events."""

from __future__ import annotations

from flask import jsonify
from marshmallow import ValidationError, fields, post_load, validate, validates_schema
from sqlalchemy import func, inspect, update

from models.locks import lock_unit
from models.reclassify import refresh_primary_scores
from models.rescore import clear_ruleset_scores, publish_ruleset
from models.scoring import DRAFT, Rule, Ruleset
from webapp.app_state import db, state
from webapp.auth import current_unit, principal
from webapp.blueprint import Blueprint
from webapp.crud import Crud, get_scoped, register_crud, scoped
from webapp.errors import ApiError
from webapp.schema_base import StrictSchema, UTCDateTime
from webapp.services.event_input import EVENT_TYPE
from worker.jobs import try_kick_alerts

blp = Blueprint("rulesets", __name__, description="Scoring rulesets and rules")


def _window(data, start: str, end: str):
    if data.get(start) and data.get(end) and data[start] > data[end]:
        raise ValidationError(f"{end} must not be before {start}", end)


class RulesetSchema(StrictSchema):
    ruleset_id = fields.String(attribute="id", dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    score_column = fields.String(validate=validate.OneOf(["total_score"]), load_default="total_score")
    is_primary = fields.Boolean(load_default=False)
    active = fields.Boolean(load_default=True)
    start_date = UTCDateTime(allow_none=True)
    end_date = UTCDateTime(allow_none=True)
    status = fields.String(dump_only=True)
    published_at = UTCDateTime(dump_only=True, allow_none=True)  # a draft never published has none
    created_at = UTCDateTime(dump_only=True)
    updated_at = UTCDateTime(dump_only=True)

    @validates_schema
    def dates(self, data, **_):
        _window(data, "start_date", "end_date")


class RulesetUpdateSchema(RulesetSchema):
    score_column = fields.String(validate=validate.OneOf(["total_score"]))
    is_primary = fields.Boolean()
    active = fields.Boolean()


RULE_READ_ONLY = ("rule_id", "org_id", "unit_id", "created_at", "updated_at", "created_by", "updated_by")


class RuleSchema(StrictSchema):
    rule_id = fields.String(attribute="id")
    ruleset_id = fields.String(validate=validate.Length(min=1, max=36))
    org_id = fields.String()
    unit_id = fields.String()
    event_type = fields.String(required=True, validate=EVENT_TYPE)
    weight = fields.Integer(required=True, strict=True, validate=validate.Range(min=-100000, max=100000))
    icon = fields.String(allow_none=True, validate=validate.Length(max=50))
    active = fields.Boolean(load_default=True)
    start_at = UTCDateTime(allow_none=True)
    end_at = UTCDateTime(allow_none=True)
    created_at = UTCDateTime()
    updated_at = UTCDateTime()
    created_by = fields.String(allow_none=True)
    updated_by = fields.String(allow_none=True)

    @validates_schema
    def dates(self, data, **_):
        _window(data, "start_at", "end_at")

    @post_load
    def drop_read_only(self, data, **_):
        """Clients may send back what GET returned; server-owned fields are ignored, not an error."""
        for key in ("id", *RULE_READ_ONLY):
            data.pop(key, None)
        return data


class RuleUpdateSchema(RuleSchema):
    active = fields.Boolean()


class RulesetCrud(Crud):
    model = Ruleset
    label = "ruleset"

    def conflict_message(self, obj):
        return f"a ruleset named '{obj.name}' already exists"

    def validate(self, session, obj, creating):
        self.check_window(obj, "start_date", "end_date")
        self.refuse_duplicate(
            session, obj, "name", Ruleset.unit_id == obj.unit_id, func.lower(Ruleset.name) == obj.name.lower()
        )
        obj._primary_changed = creating and obj.is_primary or inspect(obj).attrs.is_primary.history.has_changes()
        if obj.is_primary:
            session.execute(
                update(Ruleset)
                .where(Ruleset.unit_id == obj.unit_id, Ruleset.id != (obj.id or ""), Ruleset.is_primary.is_(True))
                .values(is_primary=False)
                .execution_options(synchronize_session=False)
            )
        if creating:
            obj.status = DRAFT

    def after_change(self, session, obj, action):
        if getattr(obj, "_primary_changed", False) or (action == "delete" and obj.is_primary):
            refresh_primary_scores(session, obj.unit_id)

    def after_commit(self, obj, action):
        try_kick_alerts(state(), obj.unit_id)


class RuleCrud(Crud):
    model = Rule
    label = "rule"

    def conflict_message(self, obj):
        return f"ruleset already has a rule for event type '{obj.event_type}'"

    def create(self, data):
        if not data.get("ruleset_id"):
            primary = db().execute(scoped(Ruleset).where(Ruleset.is_primary.is_(True))).scalar()
            if primary is None:
                raise ApiError(
                    400,
                    "validation_error",
                    "ruleset_id is required when the OU has no primary ruleset",
                    {"ruleset_id": ["required"]},
                )
            data["ruleset_id"] = primary.id
        data["created_by"] = data["updated_by"] = principal().member_id
        return super().create(data)

    def update(self, obj_id, data):
        data["updated_by"] = principal().member_id
        return super().update(obj_id, data)

    def validate(self, session, obj, creating):
        get_scoped(Ruleset, obj.ruleset_id, "ruleset")
        self.check_window(obj, "start_at", "end_at")
        self.refuse_duplicate(
            session, obj, "event_type", Rule.ruleset_id == obj.ruleset_id, Rule.event_type == obj.event_type
        )


register_crud(
    blp,
    RulesetCrud(),
    RulesetSchema,
    "/rulesets",
    "/rulesets/<obj_id>",
    update_schema=RulesetUpdateSchema(partial=True),
)
register_crud(
    blp,
    RuleCrud(),
    RuleSchema,
    "/rules",
    "/rules/<obj_id>",
    update_schema=RuleUpdateSchema(partial=True),
    statuses={"post": (404,)},
)  # its ruleset_id names no ruleset of the OU


@blp.route("/rulesets/<obj_id>/rules", methods=["GET"])
@blp.response(200, RuleSchema(many=True))
def ruleset_rules(obj_id):
    get_scoped(Ruleset, obj_id, "ruleset")
    return db().execute(scoped(Rule).where(Rule.ruleset_id == obj_id).order_by(Rule.created_at)).scalars().all()


class UnpublishedSchema(StrictSchema):
    ruleset = fields.Nested(RulesetSchema)


class PublishedSchema(UnpublishedSchema):
    rescored_leads = fields.Integer()


@blp.route("/rulesets/<obj_id>/publish", methods=["POST"])
@blp.alt_response(200, schema=PublishedSchema, success=True)
def publish(obj_id):
    """Draft -> published (or republish after rule edits): the current rules now score, every lead is rescored."""
    session = db()
    lock_unit(session, current_unit())
    rs = get_scoped(Ruleset, obj_id, "ruleset")
    leads = publish_ruleset(session, rs)
    session.commit()
    try_kick_alerts(state(), rs.unit_id)
    return jsonify({"ruleset": RulesetSchema().dump(rs), "rescored_leads": leads})


@blp.route("/rulesets/<obj_id>/unpublish", methods=["POST"])
@blp.alt_response(200, schema=UnpublishedSchema, success=True)
def unpublish(obj_id):
    """Back to draft: the ruleset stops scoring and its scores are withdrawn (republishing rebuilds them)."""
    session = db()
    lock_unit(session, current_unit())
    rs = get_scoped(Ruleset, obj_id, "ruleset")
    if rs.status != DRAFT:
        rs.status = DRAFT
        session.flush()
        clear_ruleset_scores(session, rs)
        if rs.is_primary:
            refresh_primary_scores(session, rs.unit_id)
    session.commit()
    try_kick_alerts(state(), rs.unit_id)
    return jsonify({"ruleset": RulesetSchema().dump(rs)})
