"""Engagement levels (ranges, colors, order); every change reclassifies the OU at once."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates_schema

from models.level_rules import COLOR_RE
from models.levels import DEFAULT_COLOR, LevelHistory
from webapp.blueprint import Blueprint
from webapp.crud import page_doc, paginate, register_crud, scoped
from webapp.representations import HistoryEntrySchema, history_entry
from webapp.schema_base import PageArgs, StrictSchema, UTCDateTime
from webapp.services.levels import LevelCrud, revert_levels

blp = Blueprint("levels", __name__, description="Engagement levels")

COLOR = validate.Regexp(COLOR_RE, error="Invalid color format: use a hex code like #ef4444")


class LevelSchema(StrictSchema):
    id = fields.String(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    min_score = fields.Integer(required=True, strict=True, validate=validate.Range(min=-1_000_000, max=1_000_000))
    max_score = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=-1_000_000, max=1_000_000))
    color = fields.String(validate=COLOR, load_default=DEFAULT_COLOR)
    order = fields.Integer(strict=True, validate=validate.Range(min=-1_000_000, max=1_000_000))
    created_at = UTCDateTime(dump_only=True)
    updated_at = UTCDateTime(dump_only=True)

    @validates_schema
    def range_order(self, data, **_):
        if data.get("max_score") is not None and "min_score" in data and data["max_score"] < data["min_score"]:
            raise ValidationError("max_score must not be below min_score", "max_score")


class LevelUpdateSchema(LevelSchema):
    color = fields.String(validate=COLOR)


register_crud(
    blp,
    LevelCrud(),
    LevelSchema,
    "/engagement-levels",
    "/engagement-levels/<obj_id>",
    list_key="levels",
    update_schema=LevelUpdateSchema(partial=True),
)


class LevelSnapshotSchema(StrictSchema):
    id = fields.String()
    name = fields.String()
    min_score = fields.Integer()
    max_score = fields.Integer(allow_none=True)
    color = fields.String()
    order = fields.Integer()


class LevelHistoryEntrySchema(HistoryEntrySchema):
    action = fields.String(metadata={"description": "create, update, delete, revert, seed or wipe-seed"})
    levels = fields.List(fields.Nested(LevelSnapshotSchema), metadata={"description": "the whole table after it"})
    reverted_from = fields.String(
        allow_none=True, metadata={"description": "a revert: the entry whose table it restored"}
    )


ENTRIES = LevelHistoryEntrySchema(many=True)
ENTRIES_PAGE = page_doc(LevelHistoryEntrySchema, "history")  # newest first


def entry_fields(entry: LevelHistory) -> dict:
    return history_entry(entry, levels=entry.snapshot, reverted_from=entry.reverted_from)


@blp.route("/engagement-levels/history", methods=["GET"])
@blp.arguments(PageArgs, location="query")
@blp.alt_response(200, schema=ENTRIES_PAGE, success=True)
def level_history(args):
    """Every change of the level table, newest first: who, when, what, and the whole table after it (docs/history.md).
    With page or limit: {history, total, page, limit}; without: the newest 500 as an array."""
    return paginate(
        scoped(LevelHistory),
        args,
        dump=lambda rows: ENTRIES.dump(entry_fields(row[0]) for row in rows),
        key="history",
        order_by=(LevelHistory.created_at.desc(), LevelHistory.id.desc()),
    )


@blp.route("/engagement-levels/history/<entry_id>/revert", methods=["POST"])
@blp.response(200, LevelHistoryEntrySchema)
def revert_level_table(entry_id):
    """Restore that entry's table: every lead is reclassified at once, HubSpot's engagement_level options follow, a
    Slack digest (not one alert per lead) tells of the leads it moved into the alert level; answers the revert's own
    history entry."""
    return entry_fields(revert_levels(entry_id))
