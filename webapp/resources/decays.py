"""Score decay rules: after inactive_for units without an event a lead loses decrease points, once per such period."""

from __future__ import annotations

from marshmallow import fields, validate
from sqlalchemy import inspect

from models.base import utcnow
from models.decay_pass import reschedule_unit
from models.scoring import DECAY_UNITS, DecayRule
from webapp.blueprint import Blueprint
from webapp.crud import Crud, register_crud
from webapp.schema_base import EchoSchema, UTCDateTime

blp = Blueprint("decays", __name__, description="Score decay rules")

PERIOD_FIELDS = ("inactive_for", "unit", "decrease")


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


class DecayCrud(Crud):
    model = DecayRule
    label = "decay rule"

    def validate(self, session, obj, creating):
        state = inspect(obj)
        obj._period_changed = creating or any(state.attrs[name].history.has_changes() for name in PERIOD_FIELDS)
        if obj._period_changed:
            obj.applies_from = utcnow()  # an edit applies to periods ending after it, never again to past ones

    def after_change(self, session, obj, action):
        # A deleted rule only makes some lead's next period end later: none is late for it.
        if getattr(obj, "_period_changed", False):
            reschedule_unit(session, obj.unit_id)


register_crud(
    blp, DecayCrud(), DecaySchema, "/decays", "/decays/<obj_id>", update_schema=DecayUpdateSchema(partial=True)
)
