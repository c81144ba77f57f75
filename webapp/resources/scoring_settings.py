"""The OU's scoring settings: the floor at 0 (allow_negative_scores), ABM, the session idle timeout."""

from __future__ import annotations

from marshmallow import fields, validate

from models.scoring_settings import change_scoring_settings, scoring_settings
from webapp.app_state import db, state
from webapp.auth import current_unit
from webapp.blueprint import Blueprint
from webapp.schema_base import StrictSchema
from worker.jobs import try_kick_alerts

blp = Blueprint("scoring_settings", __name__, description="Scoring settings")


class ScoringSettingsSchema(StrictSchema):
    allow_negative_scores = fields.Boolean(
        metadata={"description": "scores may go below 0; changing it rescores the OU from its stored events"}
    )
    abm_enabled = fields.Boolean(metadata={"description": "account-based marketing (accounts and their scores)"})
    session_timeout_minutes = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=1440),
        metadata={"description": "minutes without an event that end a lead's visit"},
    )


@blp.route("/settings/scoring", methods=["GET"])
@blp.response(200, ScoringSettingsSchema)
def get_scoring_settings():
    return scoring_settings(db(), current_unit())


@blp.route("/settings/scoring", methods=["PUT"])
@blp.arguments(ScoringSettingsSchema)
@blp.response(200, ScoringSettingsSchema)
def put_scoring_settings(data):
    """Only the fields given change; a new floor rescores every published ruleset of the OU before answering."""
    session = db()
    unit_id = current_unit()
    rescored = change_scoring_settings(session, unit_id, data)
    session.commit()
    if rescored is not None:
        try_kick_alerts(state(), unit_id)  # levels moved: the digest (never one alert per lead)
    return scoring_settings(session, unit_id)
