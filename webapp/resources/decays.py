"""Score decay rules: after inactive_for units without an event a lead loses decrease points, once per such period."""

from __future__ import annotations

from marshmallow import fields, validate

from models.scoring import DECAY_UNITS
from webapp.blueprint import Blueprint
from webapp.crud import register_crud
from webapp.schema_base import EchoSchema, UTCDateTime
from webapp.services.decays import DecayCrud

blp = Blueprint("decays", __name__, description="Score decay rules")


class DecaySchema(EchoSchema):
    read_only = ("id", "applies_from", "created_at", "updated_at")

    decay_id = fields.String(attribute="id", metadata={"description": "read-only; ignored when sent back"})
    inactive_for = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1, max=10000),
        metadata={"description": "how many units without an event make one period"},
    )
    unit = fields.String(required=True, validate=validate.OneOf(list(DECAY_UNITS)))
    decrease = fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=1, max=100000),
        metadata={"description": "points taken once per period"},
    )
    applies_from = UTCDateTime(
        metadata={"description": "read-only: periods ending after this moment (the rule's creation or last edit) apply"}
    )
    created_at = UTCDateTime()
    updated_at = UTCDateTime()


class DecayUpdateSchema(DecaySchema):
    """PUT: any of the fields, the others kept."""


register_crud(
    blp, DecayCrud(), DecaySchema, "/decays", "/decays/<obj_id>", update_schema=DecayUpdateSchema(partial=True)
)
