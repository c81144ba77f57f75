"""Engagement levels (ranges, colors, order); every change reclassifies the OU at once."""

from __future__ import annotations

import logging

from marshmallow import ValidationError, fields, validate, validates_schema
from sqlalchemy import func, select

from models.hubspot_sync_state import request_options_sync
from models.level_queries import level_snapshot
from models.level_rules import COLOR_RE, LevelSpec, LevelTableError, validate_table
from models.levels import DEFAULT_COLOR, EngagementLevel, LevelHistory
from models.reclassify import reclassify_unit
from webapp.app_state import db, state
from webapp.auth import principal
from webapp.blueprint import Blueprint
from webapp.crud import Crud, register_crud, scoped
from webapp.errors import ApiError
from webapp.schema_base import StrictSchema, UTCDateTime
from webapp.services.levels import try_enqueue_options
from worker.jobs import try_kick_alerts

blp = Blueprint("levels", __name__, description="Engagement levels")
log = logging.getLogger("leadpulse.levels")

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


class LevelCrud(Crud):
    model = EngagementLevel
    label = "engagement level"

    def list_query(self):
        return scoped(EngagementLevel).order_by(EngagementLevel.order, EngagementLevel.min_score)

    def conflict_message(self, obj):
        return f"a level named '{obj.name}' already exists"

    def create(self, data):
        if "order" not in data:
            top = (
                db()
                .execute(select(func.max(EngagementLevel.order)).where(EngagementLevel.unit_id == principal().unit_id))
                .scalar()
            )
            data["order"] = (top or 0) + 1
        return super().create(data)

    def validate(self, session, obj, creating):
        others = session.execute(
            select(EngagementLevel).where(EngagementLevel.unit_id == obj.unit_id, EngagementLevel.id != (obj.id or ""))
        ).scalars()
        table = [LevelSpec(lv.id, lv.name, lv.min_score, lv.max_score) for lv in others]
        table.append(LevelSpec(obj.id or "", obj.name, obj.min_score, obj.max_score))
        try:
            validate_table(table)
        except LevelTableError as exc:
            status = 409 if exc.code == "duplicate_name" else 400
            raise ApiError(status, exc.code, exc.message, {exc.field: [exc.message]})

    def before_delete(self, session, obj):
        count = session.execute(
            select(func.count()).select_from(EngagementLevel).where(EngagementLevel.unit_id == obj.unit_id)
        ).scalar()
        if count <= 1:
            raise ApiError(400, "last_level", "cannot delete the last engagement level; add another first")
        # Move its leads first, so each move is recorded (ON DELETE SET NULL would erase them silently).
        reclassify_unit(session, obj.unit_id, exclude_level_id=obj.id)

    def after_change(self, session, obj, action):
        p = principal()
        session.add(
            LevelHistory(
                unit_id=obj.unit_id,
                actor=p.member_id or p.credential_id,
                action=action,
                snapshot=level_snapshot(session, obj.unit_id),
            )
        )
        session.flush()
        if action != "delete":  # before_delete moved the deleted level's leads already
            reclassify_unit(session, obj.unit_id)
        request_options_sync(session, obj.unit_id)

    def after_commit(self, obj, action):
        try_enqueue_options(obj.unit_id)
        try_kick_alerts(state(), obj.unit_id)


register_crud(
    blp,
    LevelCrud(),
    LevelSchema,
    "/engagement-levels",
    "/engagement-levels/<obj_id>",
    list_key="levels",
    update_schema=LevelUpdateSchema(partial=True),
)
