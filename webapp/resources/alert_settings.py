"""Alert settings per OU and the organization's Slack app credentials (secret write-only)."""

from __future__ import annotations

from flask import jsonify
from marshmallow import fields, validate

from integrations.secretbox import encrypt
from integrations.slack_store import CLIENT_SECRET_PURPOSE
from models.members import owns_every_unit
from models.slack import SlackApp
from webapp.app_state import db, state
from webapp.auth import current_unit, principal
from webapp.blueprint import Blueprint
from webapp.errors import ApiError
from webapp.schema_base import StrictSchema, UTCDateTime, rfc3339
from webapp.services.alert_settings import effective_alert_settings, update_alert_settings

blp = Blueprint("alert_settings", __name__, description="Alert and Slack app settings")


class AlertSettingsIn(StrictSchema):
    alert_min_level = fields.String(
        allow_none=True,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "level name or id; null for the default (the level named Hot)"},
    )
    cooldown_hours = fields.Integer(strict=True, validate=validate.Range(min=0, max=24 * 30))
    digest_on_reclassification = fields.Boolean()


class SlackAppIn(StrictSchema):
    client_id = fields.String(
        required=True, validate=validate.Regexp(r"^[0-9]+\.[0-9]+$", error="is not a Slack client id")
    )
    client_secret = fields.String(required=True, validate=validate.Length(min=16, max=200), load_only=True)


class AlertLevelSchema(StrictSchema):
    id = fields.String()
    name = fields.String()


class AlertSettingsSchema(StrictSchema):
    alert_min_level = fields.Nested(
        AlertLevelSchema, allow_none=True, metadata={"description": "null: none set and no level named Hot (no alerts)"}
    )
    alert_min_level_is_default = fields.Boolean(metadata={"description": "the level named Hot, none being set"})
    cooldown_hours = fields.Integer()
    digest_on_reclassification = fields.Boolean()


class SlackAppSchema(StrictSchema):
    configured = fields.Boolean()
    client_id = fields.String(allow_none=True)
    client_secret_set = fields.Boolean(metadata={"description": "the secret itself is never returned"})
    updated_at = UTCDateTime(allow_none=True)


@blp.route("/settings/ou/alerts", methods=["GET"])
@blp.alt_response(200, schema=AlertSettingsSchema, success=True)
def get_alerts():
    return jsonify(effective_alert_settings(current_unit()))


@blp.route("/settings/ou/alerts", methods=["PUT"])
@blp.arguments(AlertSettingsIn)
@blp.alt_response(200, schema=AlertSettingsSchema, success=True)
def put_alerts(data):
    return jsonify(update_alert_settings(current_unit(), data))


def _slack_app_view(app: SlackApp | None) -> dict:
    return {
        "configured": app is not None,
        "client_id": app.client_id if app else None,
        "client_secret_set": app is not None,
        "updated_at": rfc3339(app.updated_at) if app else None,
    }


@blp.route("/settings/slack-app", methods=["GET"], member_only=True)
@blp.alt_response(200, schema=SlackAppSchema, success=True)
def get_slack_app():
    return jsonify(_slack_app_view(db().get(SlackApp, principal().org_id)))


@blp.route("/settings/slack-app", methods=["PUT"], need="own")
@blp.arguments(SlackAppIn)
@blp.alt_response(200, schema=SlackAppSchema, success=True)
def put_slack_app(data):
    """Organization-wide, so only an Owner of every OU may set it; the secret is stored encrypted, never returned."""
    p = principal()
    session = db()
    if not owns_every_unit(session, p.org_id, p.member_id):
        raise ApiError(
            403, "forbidden", "the Slack app serves every organization unit: only an Owner of all of them may set it"
        )
    app = session.get(SlackApp, p.org_id) or SlackApp(org_id=p.org_id)
    app.client_id = data["client_id"]
    app.client_secret_encrypted = encrypt(state().secret_key, CLIENT_SECRET_PURPOSE, data["client_secret"])
    session.add(app)
    session.commit()
    return jsonify(_slack_app_view(app))
