"""Slack per OU: OAuth install (single-use state), status, channels and users, alert target, test message."""

from __future__ import annotations

import re
from urllib.parse import urlencode

from flask import g, jsonify, redirect, request, url_for
from marshmallow import fields, validate

from integrations.slack_store import STATE_TTL_SECONDS
from webapp import audit_trail
from webapp.app_state import external_url
from webapp.auth import current_unit, principal, public
from webapp.blueprint import Blueprint, raw_query
from webapp.cookies import delete_cookie, set_cookie
from webapp.errors import ApiError
from webapp.schema_base import StrictSchema, UTCDateTime
from webapp.services.integration_status import slack_status
from webapp.services.slack_connect import (
    begin_install,
    consume_state,
    disconnect_slack,
    finish_install,
    list_channels,
    list_users,
    send_test,
    set_target,
)

blp = Blueprint("slack", __name__, description="Slack integration")

SLACK_ID = validate.Regexp(r"^[A-Z0-9]{2,40}$", error="is not a Slack channel or user id")


class TargetSchema(StrictSchema):
    kind = fields.String(required=True, validate=validate.OneOf(["channel", "user"]))
    id = fields.String(required=True, validate=SLACK_ID)


class TestMessageSchema(TargetSchema):
    text = fields.String(validate=validate.Length(min=1, max=3000))


class ChannelArgs(StrictSchema):
    types = fields.String(load_default="public_channel,private_channel", validate=validate.Length(max=100))


class SlackDeliverySchema(StrictSchema):
    delivery = fields.String(
        validate=validate.OneOf(["ok", "error", "not configured"]),
        metadata={"description": "not configured: alerts wait for a token and a target, none is lost"},
    )
    pending = fields.Integer()
    sent = fields.Integer()
    failed = fields.Integer()
    suppressed = fields.Integer()
    summarized = fields.Integer()
    last_failure = fields.String(allow_none=True, metadata={"description": "the latest failed alert's error"})
    last_error = fields.String(allow_none=True)
    last_sent_at = UTCDateTime(allow_none=True)


class SlackStatusSchema(StrictSchema):
    connected = fields.Boolean()
    token_source = fields.String(allow_none=True, validate=validate.OneOf(["install", "environment"]))
    team_name = fields.String(allow_none=True)
    team_id = fields.String(allow_none=True)
    bot_user_id = fields.String(allow_none=True)
    updated_at = UTCDateTime(allow_none=True)
    default_target_kind = fields.String(allow_none=True, validate=validate.OneOf(["channel", "user"]))
    default_target_id = fields.String(allow_none=True)
    authorize_url = fields.String(allow_none=True, metadata={"description": "null until the Slack app is set"})
    alerts = fields.Nested(SlackDeliverySchema)


def status(unit_id: str) -> dict:
    return slack_status(unit_id, external_url(url_for("slack.install_redirect")))


@blp.route("/integrations/slack", methods=["GET"], member_only=True, statuses=())
@blp.alt_response(200, schema=SlackStatusSchema, success=True)
def get_status():
    return jsonify(status(current_unit()))


def _authorize_url() -> str:
    p = principal()
    url, g.slack_state = begin_install(p.org_id, current_unit(), p.member_id, external_url(url_for("slack.callback")))
    return url


STATE_COOKIE = "leadpulse_slack_state"


def _with_state_cookie(resp):
    """The state is also bound to this browser, so an authorize URL sent to someone else cannot install into our OU."""
    set_cookie(resp, STATE_COOKIE, g.slack_state, max_age=STATE_TTL_SECONDS, path=url_for("slack.callback"))
    return resp


@blp.route(
    "/integrations/slack/install",
    methods=["GET"],
    endpoint="install_redirect",
    need="configure",  # a GET that starts an install: as POST does
    member_only=True,
    statuses=(302, 403, 409),
)
@audit_trail.audited  # starts an install as POST does
def install_redirect():
    return browser_install(from_console=False)


class AuthorizeUrlSchema(StrictSchema):
    authorize_url = fields.String(metadata={"description": "Slack's consent page, for this browser only"})


@blp.route("/integrations/slack/install", methods=["POST"], member_only=True, statuses=(403, 409))
@blp.alt_response(200, schema=AuthorizeUrlSchema, success=True)
def install():
    return _mark_console(_with_state_cookie(jsonify({"authorize_url": _authorize_url()})), False)


CONSOLE_COOKIE = "leadpulse_slack_console"  # this browser started its latest install from the console
CONSOLE_PAGE = "/app/integrations"
CONSOLE_COOKIE_SECONDS = 24 * 3600  # outlives the state, so an expired one is still explained on the console's page


def browser_install(from_console: bool):
    """Send this browser to Slack's consent page; the callback brings it back to the console if it started there."""
    resp = _with_state_cookie(redirect(_authorize_url(), code=302))
    return _mark_console(resp, from_console)


def _mark_console(resp, from_console: bool):
    if from_console:
        set_cookie(resp, CONSOLE_COOKIE, "1", max_age=CONSOLE_COOKIE_SECONDS, path=url_for("slack.callback"))
    else:
        delete_cookie(resp, CONSOLE_COOKIE, path=url_for("slack.callback"))
    return resp


@blp.route("/integrations/slack/callback", methods=["GET"], statuses=(302, 400, 403, 409, 502, 503))
@public
@audit_trail.audited
@raw_query
def callback():
    """Slack redirects the browser here; nothing is stored unless the state and the code are good. An install started
    from the console goes back to its Integrations page, saying what went wrong if anything did."""
    back = CONSOLE_PAGE if request.cookies.get(CONSOLE_COOKIE) else "/home"
    try:
        outcome = _finish()
    except ApiError as exc:
        if back != CONSOLE_PAGE:
            raise
        said = exc.details["code"][0] if exc.code == "oauth_failed" else exc.code  # Slack's own error code, or ours
        outcome = {"slack": "error", "reason": _reason(said)}
    return _clear_state(redirect(back + "?" + urlencode(outcome), code=302))


def _reason(text: str) -> str:
    """A word for the page to explain (Slack's error codes are such words): nothing else goes into the URL."""
    return re.sub(r"[^a-z_]", "", text.lower())[:50] or "unknown"


def _finish() -> dict:
    req = consume_state(request.args.get("state", ""), request.cookies.get(STATE_COOKIE, ""))
    audit_trail.attribute(org_id=req.org_id, unit_id=req.unit_id, member_id=req.member_id)  # who started the install
    if request.args.get("error"):
        return {"slack": "error", "reason": _reason(request.args["error"])}
    finish_install(req, request.args.get("code", ""), external_url(url_for("slack.callback")))
    return {"slack": "connected"}


def _clear_state(resp):
    delete_cookie(resp, STATE_COOKIE, path=url_for("slack.callback"))
    return resp


@blp.route("/integrations/slack", methods=["DELETE"], member_only=True, statuses=(204, 403, 404))
def disconnect():
    disconnect_slack(current_unit())
    return "", 204


class CursorSchema(StrictSchema):
    next_cursor = fields.String(metadata={"description": "always empty: every page is read"})


class SlackListSchema(StrictSchema):
    ok = fields.Boolean()
    response_metadata = fields.Nested(CursorSchema)


class SlackChannelsSchema(SlackListSchema):
    channels = fields.List(fields.Dict(), metadata={"description": "as Slack's conversations.list gives them"})


class SlackUsersSchema(SlackListSchema):
    members = fields.List(fields.Dict(), metadata={"description": "as Slack's users.list gives them"})


@blp.route("/integrations/slack/channels", methods=["GET"], member_only=True, statuses=(403, 409, 502))
@blp.alt_response(200, schema=SlackChannelsSchema, success=True)
@blp.arguments(ChannelArgs, location="query")
def channels(args):
    items = list_channels(current_unit(), args["types"])
    return jsonify({"ok": True, "channels": items, "response_metadata": {"next_cursor": ""}})


@blp.route("/integrations/slack/users", methods=["GET"], member_only=True, statuses=(403, 409, 502))
@blp.alt_response(200, schema=SlackUsersSchema, success=True)
def users():
    return jsonify({"ok": True, "members": list_users(current_unit()), "response_metadata": {"next_cursor": ""}})


@blp.route("/integrations/slack/target", methods=["PUT"], member_only=True, statuses=(403, 409, 502))
@blp.arguments(TargetSchema)
@blp.alt_response(200, schema=SlackStatusSchema, success=True)
def put_target(data):
    """Stored only once Slack confirms the bot can post there."""
    unit_id = current_unit()
    set_target(unit_id, data["kind"], data["id"])
    return jsonify(status(unit_id))


class TestSentSchema(StrictSchema):
    message = fields.String()
    channel = fields.String(metadata={"description": "where Slack posted it"})
    ts = fields.String(metadata={"description": "the message's Slack timestamp"})


@blp.route("/integrations/slack/test", methods=["POST"], member_only=True, statuses=(403, 409, 502))
@blp.alt_response(200, schema=TestSentSchema, success=True)
@blp.arguments(TestMessageSchema)
def send_test_message(data):
    posted = send_test(current_unit(), data["kind"], data["id"], data.get("text"))
    return jsonify({"message": "test message sent", "channel": posted["channel"], "ts": posted["ts"]})
