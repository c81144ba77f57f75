"""Alert settings per OU and the organization's Slack app credentials (secret write-only)."""

from __future__ import annotations

from flask import jsonify
from marshmallow import fields, validate

from webapp.auth import current_unit, principal
from webapp.blueprint import Blueprint
from webapp.schema_base import StrictSchema, UTCDateTime
from webapp.services.alert_settings import effective_alert_settings, update_alert_settings
from webapp.services.slack_connect import set_slack_app, slack_app_view

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


@blp.route("/settings/slack-app", methods=["GET"], member_only=True)
@blp.alt_response(200, schema=SlackAppSchema, success=True)
def get_slack_app():
    return jsonify(slack_app_view(principal().org_id))


@blp.route("/settings/slack-app", methods=["PUT"], need="own")
@blp.arguments(SlackAppIn)
@blp.alt_response(200, schema=SlackAppSchema, success=True)
def put_slack_app(data):
    """Organization-wide, so only an Owner of every OU may set it; the secret is stored encrypted, never returned."""
    p = principal()
    return jsonify(set_slack_app(p.org_id, p.member_id, data["client_id"], data["client_secret"]))
