"""Engagement rulesets and their rules; publishing rescores the OU from stored events."""

from __future__ import annotations

from datetime import datetime

from flask import jsonify
from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from models.base import utcnow
from models.change_history import ruleset_known
from models.scoring import Rule, Ruleset, RulesetHistory
from webapp.app_state import db
from webapp.auth import current_unit
from webapp.blueprint import Blueprint
from webapp.crud import get_scoped, page_doc, paginate, register_crud, scoped
from webapp.errors import not_found
from webapp.representations import HistoryEntrySchema, history_entry
from webapp.schema_base import EchoSchema, PageArgs, StrictSchema, UTCDateTime
from webapp.services import previews, rulesets
from webapp.services.event_input import EVENT_TYPE
from webapp.services.rulesets import RuleCrud, RulesetCrud

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


WEIGHT_RANGE = validate.Range(min=-100000, max=100000)
RULE_READ_ONLY = ("rule_id", "org_id", "unit_id", "created_at", "updated_at", "created_by", "updated_by")


class RuleSchema(EchoSchema):
    read_only = ("id", *RULE_READ_ONLY)

    rule_id = fields.String(attribute="id")
    ruleset_id = fields.String(validate=validate.Length(min=1, max=36))
    org_id = fields.String()
    unit_id = fields.String()
    event_type = fields.String(required=True, validate=EVENT_TYPE)
    weight = fields.Integer(required=True, strict=True, validate=WEIGHT_RANGE)
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


class RuleUpdateSchema(RuleSchema):
    active = fields.Boolean()


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
    rs, leads = rulesets.publish(obj_id)
    return jsonify({"ruleset": RulesetSchema().dump(rs), "rescored_leads": leads})


@blp.route("/rulesets/<obj_id>/unpublish", methods=["POST"])
@blp.alt_response(200, schema=UnpublishedSchema, success=True)
def unpublish(obj_id):
    """Back to draft: the ruleset stops scoring and its scores are withdrawn (republishing rebuilds them)."""
    return jsonify({"ruleset": RulesetSchema().dump(rulesets.unpublish(obj_id))})


class RuleEditSchema(RuleUpdateSchema):
    """A rule as a preview or backtest should take it: laid over the ruleset's rule for its event type (only the fields
    given change), or a new rule (weight then required)."""

    class Meta(StrictSchema.Meta):
        exclude = (*RULE_READ_ONLY, "ruleset_id", "icon")

    weight = fields.Integer(strict=True, validate=WEIGHT_RANGE)


class TrialSchema(StrictSchema):
    rules = fields.List(
        fields.Nested(RuleEditSchema),
        load_default=list,
        validate=validate.Length(max=500),
        metadata={"description": "edits laid over the ruleset's current rules by event type (nothing is saved)"},
    )
    replace_rules = fields.Boolean(
        load_default=False, metadata={"description": "true: the edits are the whole ruleset, its stored rules left out"}
    )


class PreviewIn(TrialSchema):
    as_primary = fields.Boolean(
        metadata={
            "description": "preview the leads' score and levels as if this ruleset were the primary (what publishing "
            "and then making it primary does); default: whether it is the primary. False: only this ruleset's score"
        }
    )


class LevelCountSchema(StrictSchema):
    level_id = fields.String(allow_none=True, metadata={"description": "null: Unclassified"})
    level = fields.String(metadata={"description": "the level's name, or Unclassified"})


class LevelMovesSchema(LevelCountSchema):
    before = fields.Integer(metadata={"description": "leads in the level now"})
    after = fields.Integer(metadata={"description": "leads in the level once published"})
    moved_in = fields.Integer()
    moved_out = fields.Integer()


class LeadStateSchema(StrictSchema):
    score = fields.Integer()
    level_id = fields.String(allow_none=True, metadata={"description": "null: Unclassified, or levels not previewed"})
    level = fields.String(allow_none=True, metadata={"description": "null when levels are not previewed"})


class MoverSchema(StrictSchema):
    lead_id = fields.String()
    change = fields.Integer()
    before = fields.Nested(LeadStateSchema)
    after = fields.Nested(LeadStateSchema)


class PreviewOut(StrictSchema):
    ruleset_id = fields.String()
    as_primary = fields.Boolean()
    leads = fields.Integer(metadata={"description": "the OU's leads compared (merged leads left out)"})
    rescored_leads = fields.Integer(metadata={"description": "leads publishing would give a score of this ruleset"})
    score_changes = fields.Integer(metadata={"description": "leads whose score would change"})
    level_changes = fields.Integer(allow_none=True, metadata={"description": "null unless as_primary"})
    levels = fields.List(
        fields.Nested(LevelMovesSchema),
        allow_none=True,
        metadata={"description": "each level then Unclassified: moves in and out; null unless as_primary"},
    )
    top_movers = fields.List(fields.Nested(MoverSchema), metadata={"description": "the 20 largest score changes"})


class OutcomeSchema(StrictSchema):
    event_type = fields.String(validate=EVENT_TYPE, metadata={"description": "an event of this type, e.g. deal_won"})
    lifecycle_stage = fields.String(
        validate=[validate.Length(min=1, max=100), validate.Regexp(r"^[A-Za-z0-9_\- ]+$")],
        metadata={"description": "a HubSpot lifecycle stage (internal value, e.g. customer) reached"},
    )

    @validates_schema
    def one_kind(self, data, **_):
        if len(data) != 1:
            raise ValidationError("give exactly one of event_type and lifecycle_stage", "event_type")


class BacktestIn(TrialSchema):
    outcome = fields.Nested(OutcomeSchema, required=True)
    since = UTCDateTime(allow_none=True, metadata={"description": "start of the period; default: every stored event"})
    until = UTCDateTime(allow_none=True, metadata={"description": "end of the period; default: now"})

    @post_load
    def period(self, data, **_):
        data["until"] = data.get("until") or utcnow()
        if data.get("since") and data["since"] > data["until"]:
            raise ValidationError("must not be after until (default now)", "since")
        return data


class BacktestLevelSchema(LevelCountSchema):
    leads = fields.Integer(metadata={"description": "leads in the level at some time in the period"})
    reached_outcome = fields.Integer(metadata={"description": "of them, those with an outcome after first in it"})
    precision = fields.Float(allow_none=True, metadata={"description": "reached_outcome / leads"})
    lift = fields.Float(allow_none=True, metadata={"description": "precision / base_rate"})


class AlertCountSchema(StrictSchema):
    sent = fields.Integer()
    suppressed = fields.Integer(metadata={"description": "entries within the cooldown of the lead's last alert"})


class BacktestVersionSchema(StrictSchema):
    ruleset_id = fields.String()
    levels = fields.List(fields.Nested(BacktestLevelSchema))
    alerts = fields.Nested(AlertCountSchema, allow_none=True, metadata={"description": "null: no alert level"})


class BacktestVersionsSchema(StrictSchema):
    draft = fields.Nested(BacktestVersionSchema, metadata={"description": "this ruleset with the edits, published"})
    primary = fields.Nested(
        BacktestVersionSchema, allow_none=True, metadata={"description": "the primary as it scores now; null: none"}
    )


class BacktestOut(StrictSchema):
    ruleset_id = fields.String()
    outcome = fields.Nested(OutcomeSchema)
    since = UTCDateTime(allow_none=True)
    until = UTCDateTime()
    leads = fields.Integer(metadata={"description": "leads with a stored event up to until"})
    reached_outcome = fields.Integer(metadata={"description": "of them, those with an outcome in the period"})
    base_rate = fields.Float(allow_none=True, metadata={"description": "reached_outcome / leads"})
    events_replayed = fields.Integer()
    alert_level = fields.Nested(LevelCountSchema, allow_none=True)
    cooldown_hours = fields.Integer()
    versions = fields.Nested(BacktestVersionsSchema)


# Both write nothing, yet need `configure`, as publishing does: the body is a proposed configuration, and each call
# replays every stored event of the OU (seconds of a web process on a large OU), more than a read-only key should
# be able to set off at will.
@blp.route("/rulesets/<obj_id>/rescore-preview", methods=["POST"], need="configure")
@blp.arguments(PreviewIn, required=False)  # no body: the stored rules as they are
@blp.response(200, PreviewOut)
def rescore_preview(body, obj_id):
    """What publishing this ruleset would do, without doing it.

    The ruleset's current rules (what publishing would freeze), with the body's edits laid over them, replayed over
    every stored event of the OU by the same computation publishing runs: how many leads would change score, how many
    would move into and out of each level (Unclassified included), and the 20 largest movers before and after.
    Levels classify the primary ruleset's score only, so level moves are reported when the ruleset is the primary,
    or with `as_primary: true` (what publishing and then making it primary would do); otherwise the numbers are this
    ruleset's own score (`GET /score/{id}?ruleset=`) and `levels` is null. Nothing is written; the numbers equal what
    publishing does while nothing else changes in between. See docs/previews.md.
    """
    return previews.rescore_preview(obj_id, body)


@blp.route("/rulesets/<obj_id>/backtest", methods=["POST"], need="configure")
@blp.arguments(BacktestIn)
@blp.response(200, BacktestOut)
def backtest(body, obj_id):
    """How well this ruleset (with edits), and the current primary, would have foretold an outcome.

    Replays the OU's stored events up to `until` under each version, event by event, classifying its score with the
    current level table. Per level: the leads that were in it during the period (from `since`; a lead counts for the
    level it held when the period began), how many of them reached the outcome afterwards (an outcome event later
    than the moment the lead first was in that level in the period), precision (reached / leads) and lift (precision
    over the base rate: leads with an outcome in the period / leads replayed). Alerts: entries into the alert level
    in the period, sent or suppressed by the cooldown, at event time. The outcome is an event type (`deal_won`) or a
    HubSpot lifecycle stage reached (`contact.propertyChange` webhooks, kept as events). Writes nothing. See
    docs/previews.md for the exact rules and limits.
    """
    return previews.backtest(obj_id, body)


class RulesetHistoryArgs(PageArgs):
    ruleset_id = fields.String(validate=validate.Length(min=1, max=36), metadata={"description": "one ruleset's"})


class RuleSnapshotSchema(StrictSchema):
    id = fields.String()
    event_type = fields.String()
    weight = fields.Integer()
    active = fields.Boolean()
    start_at = UTCDateTime(allow_none=True)
    end_at = UTCDateTime(allow_none=True)


class RulesetHistoryEntrySchema(HistoryEntrySchema):
    action = fields.String(metadata={"description": "publish or unpublish"})
    ruleset_id = fields.String()
    ruleset_name = fields.String(metadata={"description": "as it was named then"})
    rules = fields.List(
        fields.Nested(RuleSnapshotSchema),
        metadata={"description": "the rules it scored by from then (publish), or until then (unpublish)"},
    )


HISTORY_ENTRIES = RulesetHistoryEntrySchema(many=True)
HISTORY_PAGE = page_doc(RulesetHistoryEntrySchema, "history")  # newest first


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def history_fields(entry: RulesetHistory) -> dict:
    rules = [{**rule, "start_at": _when(rule["start_at"]), "end_at": _when(rule["end_at"])} for rule in entry.snapshot]
    return history_entry(entry, ruleset_id=entry.ruleset_id, ruleset_name=entry.ruleset_name, rules=rules)


@blp.route("/rulesets/history", methods=["GET"], statuses=(404,))
@blp.arguments(RulesetHistoryArgs, location="query")
@blp.alt_response(200, schema=HISTORY_PAGE, success=True)
def ruleset_history(args):
    """Every publish and unpublish of the OU's rulesets (or of one, ruleset_id; deleted ones too), newest first: who,
    when, and the rules; like GET /engagement-levels/history (docs/history.md). With page or limit: {history, total,
    page, limit}; without: the newest 500 as an array."""
    stmt = scoped(RulesetHistory)
    if "ruleset_id" in args:
        if not ruleset_known(db(), current_unit(), args["ruleset_id"]):
            raise not_found("ruleset")
        stmt = stmt.where(RulesetHistory.ruleset_id == args["ruleset_id"])
    return paginate(
        stmt,
        args,
        dump=lambda rows: HISTORY_ENTRIES.dump(history_fields(row[0]) for row in rows),
        key="history",
        order_by=(RulesetHistory.created_at.desc(), RulesetHistory.id.desc()),
    )
