"""Slack per OU: OAuth install (single-use state), status, channels and users, alert target, test message."""

from __future__ import annotations

import hmac
import re
from urllib.parse import urlencode

from flask import g, jsonify, redirect, request, url_for
from marshmallow import fields, validate
from slack_sdk.oauth import AuthorizeUrlGenerator
from slack_sdk.oauth.installation_store import Installation
from sqlalchemy import delete, select

from integrations.secretbox import decrypt
from integrations.slack import SlackAdapter, SlackError, authorize_url_base
from integrations.slack_alerts import CONFIG_ERRORS
from integrations.slack_store import (
    CLIENT_SECRET_PURPOSE,
    STATE_TTL_SECONDS,
    EncryptedInstallationStore,
    resolve,
    state_store,
)
from models.base import utcnow
from models.members import role_in
from models.slack import SlackApp, SlackConnection, SlackInstallRequest
from webapp import audit_trail
from webapp.access import ROLE_GRANTS
from webapp.app_state import close_db, db, external_url, state
from webapp.auth import current_unit, plausible_id, principal, public
from webapp.blueprint import Blueprint
from webapp.cookies import delete_cookie, set_cookie
from webapp.errors import ApiError
from webapp.schema_base import StrictSchema, UTCDateTime
from webapp.services.integration_status import slack_status
from worker.jobs import try_kick_alerts

blp = Blueprint("slack", __name__, description="Slack integration")

# history: to check whether a post that may have gone out before a crash did (integrations/slack_alerts.py)
SCOPES = [
    "chat:write",
    "channels:read",
    "groups:read",
    "users:read",
    "im:write",
    "channels:history",
    "groups:history",
    "im:history",
]
SLACK_ID = validate.Regexp(r"^[A-Z0-9]{2,40}$", error="is not a Slack channel or user id")
CHANNEL_TYPES = {"public_channel", "private_channel", "mpim", "im"}


class TargetSchema(StrictSchema):
    kind = fields.String(required=True, validate=validate.OneOf(["channel", "user"]))
    id = fields.String(required=True, validate=SLACK_ID)


class TestMessageSchema(TargetSchema):
    text = fields.String(validate=validate.Length(min=1, max=3000))


class ChannelArgs(StrictSchema):
    types = fields.String(load_default="public_channel,private_channel", validate=validate.Length(max=100))


def _slack_app(org_id: str) -> tuple[str, str] | None:
    app = db().get(SlackApp, org_id)
    if app is None:
        return None
    secret = decrypt(state().secret_key, CLIENT_SECRET_PURPOSE, app.client_secret_encrypted)
    return (app.client_id, secret) if secret else None


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
    unit_id = current_unit()
    app = _slack_app(p.org_id)
    if app is None:
        raise ApiError(
            409, "slack_app_not_configured", "set the organization's Slack app first: PUT /settings/slack-app"
        )
    settings = state().settings
    close_db()  # slack-sdk's store writes on its own connection: hold no transaction meanwhile (SQLite)
    issued = state_store(settings.database_url).issue()
    with state().WriterSession() as s, s.begin():
        s.add(SlackInstallRequest(state=issued, unit_id=unit_id, org_id=p.org_id, member_id=p.member_id))
    g.slack_state = issued
    generator = AuthorizeUrlGenerator(
        client_id=app[0],
        scopes=SCOPES,
        redirect_uri=external_url(url_for("slack.callback")),
        authorization_url=authorize_url_base(settings.slack_api_base),
    )
    return generator.generate(issued)


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
    url = _authorize_url()
    return _with_state_cookie(redirect(url, code=302))


class AuthorizeUrlSchema(StrictSchema):
    authorize_url = fields.String(metadata={"description": "Slack's consent page, for this browser only"})


@blp.route("/integrations/slack/install", methods=["POST"], member_only=True, statuses=(403, 409))
@blp.alt_response(200, schema=AuthorizeUrlSchema, success=True)
def install():
    return _with_state_cookie(jsonify({"authorize_url": _authorize_url()}))


def _consume(state_value: str) -> SlackInstallRequest:
    """Single use even under a race: our row is deleted by exactly one request, and slack-sdk's state checks expiry."""
    if not plausible_id(state_value, 200):
        raise ApiError(400, "invalid_state", "missing or malformed OAuth state", {"state": ["missing or malformed"]})
    if not hmac.compare_digest(request.cookies.get(STATE_COOKIE, ""), state_value):
        raise ApiError(
            400,
            "invalid_state",
            "this install was started in another browser; start it again here",
            {"state": ["not started in this browser"]},
        )
    with state().WriterSession() as s, s.begin():
        row = s.execute(
            delete(SlackInstallRequest)
            .where(SlackInstallRequest.state == state_value)
            .returning(SlackInstallRequest.unit_id, SlackInstallRequest.org_id, SlackInstallRequest.member_id)
        ).first()
    valid = state_store(state().settings.database_url).consume(state_value)
    if row is None or not valid:
        raise ApiError(
            400,
            "invalid_state",
            "this OAuth state is unknown, expired or already used; start the install again",
            {"state": ["unknown, expired or already used"]},
        )
    return row


@blp.route("/integrations/slack/callback", methods=["GET"], statuses=(302, 400, 409, 502, 503))
@public
@audit_trail.audited
def callback():
    """Slack redirects the browser here; nothing is stored unless the state and the code are good."""
    req = _consume(request.args.get("state", ""))
    audit_trail.attribute(org_id=req.org_id, unit_id=req.unit_id, member_id=req.member_id)  # who started the install
    if "configure" not in ROLE_GRANTS.get(role_in(db(), req.member_id, req.unit_id) or "", ()):
        raise ApiError(403, "forbidden", "whoever started this install may no longer configure this organization unit")
    if request.args.get("error"):
        reason = re.sub(r"[^a-z_]", "", request.args["error"].lower())[:50] or "unknown"
        return _clear_state(redirect("/home?" + urlencode({"slack": "error", "reason": reason}), code=302))
    code = request.args.get("code", "")
    if not code or len(code) > 300:
        raise ApiError(400, "validation_error", "missing OAuth code", {"code": ["missing"]})
    app = _slack_app(req.org_id)
    if app is None:
        raise ApiError(409, "slack_app_not_configured", "the organization's Slack app is not configured")
    settings = state().settings
    close_db()  # no transaction held open across Slack calls
    try:
        grant = SlackAdapter(None, settings.slack_api_base).oauth_access(
            app[0], app[1], code, external_url(url_for("slack.callback"))
        )
        bot = SlackAdapter(grant["access_token"], settings.slack_api_base).auth_test()
    except SlackError as exc:
        if exc.transient:
            raise ApiError(
                502, "slack_unavailable", f"Slack failed during the install ({exc}); start it again"
            ) from exc
        raise ApiError(400, "oauth_failed", f"Slack refused the install: {exc}", {"code": [str(exc)]}) from exc
    team, enterprise = grant.get("team") or {}, grant.get("enterprise") or {}
    installation = Installation(
        app_id=grant.get("app_id"),
        enterprise_id=enterprise.get("id"),
        enterprise_name=enterprise.get("name"),
        team_id=team.get("id"),
        team_name=team.get("name"),
        bot_token=grant.get("access_token"),
        bot_id=bot.get("bot_id"),
        bot_user_id=grant.get("bot_user_id"),
        bot_scopes=grant.get("scope"),
        user_id=(grant.get("authed_user") or {}).get("id"),
        is_enterprise_install=bool(grant.get("is_enterprise_install")),
        token_type=grant.get("token_type"),
    )
    EncryptedInstallationStore(app[0], settings.database_url, state().secret_key).save(installation)
    with state().WriterSession() as s, s.begin():
        conn = s.get(SlackConnection, req.unit_id) or SlackConnection(unit_id=req.unit_id)
        if conn.team_id != installation.team_id:  # channel and user ids belong to one workspace
            conn.target_kind = conn.target_id = None
        conn.client_id, conn.enterprise_id, conn.team_id = app[0], installation.enterprise_id, installation.team_id
        conn.team_name, conn.bot_user_id, conn.installed_at = installation.team_name, installation.bot_user_id, utcnow()
        conn.last_error = None
        s.add(conn)
    try_kick_alerts(state(), req.unit_id, reconfigured=True)
    return _clear_state(redirect("/home?slack=connected", code=302))


def _clear_state(resp):
    delete_cookie(resp, STATE_COOKIE, path=url_for("slack.callback"))
    return resp


@blp.route("/integrations/slack", methods=["DELETE"], member_only=True, statuses=(204, 403, 404))
def disconnect():
    session = db()
    conn = session.get(SlackConnection, current_unit())
    if conn is None or conn.team_id is None:
        raise ApiError(404, "not_found", "Slack is not installed for this organization unit")
    unit_id, team = conn.unit_id, (conn.client_id, conn.enterprise_id, conn.team_id)
    others = session.execute(
        select(SlackConnection.unit_id).where(
            SlackConnection.client_id == team[0], SlackConnection.team_id == team[2], SlackConnection.unit_id != unit_id
        )
    ).first()
    close_db()  # slack-sdk's store deletes on its own connection (SQLite: hold no write lock meanwhile)
    if others is None:  # no other OU uses this workspace's token: do not keep it (first, so a failure keeps the row)
        store = EncryptedInstallationStore(team[0], state().settings.database_url, state().secret_key)
        store.delete_installation(enterprise_id=team[1], team_id=team[2])
        store.delete_bot(enterprise_id=team[1], team_id=team[2])
    with state().WriterSession() as s, s.begin():
        s.execute(delete(SlackConnection).where(SlackConnection.unit_id == unit_id))
    return "", 204


def _adapter() -> tuple[SlackAdapter, SlackConnection | None]:
    unit_id = current_unit()
    conn = db().get(SlackConnection, unit_id)
    target = resolve(db(), unit_id, conn, state().settings, state().secret_key)
    if target.token is None:
        raise ApiError(409, "not_connected", "connect Slack first: POST /integrations/slack/install")
    close_db()
    return SlackAdapter(target.token, state().settings.slack_api_base), conn


def _slack_failed(exc: SlackError, field: str | None = None) -> ApiError:
    if exc.rate_limited:
        return ApiError(
            503,
            "slack_rate_limited",
            "Slack asks us to slow down; retry later",
            headers={"Retry-After": str(int(exc.retry_after or 1))},
        )
    if exc.transient:
        return ApiError(502, "slack_unavailable", f"Slack failed: {exc}")
    if field and exc.error in CONFIG_ERRORS - {
        "invalid_auth",
        "token_revoked",
        "account_inactive",
        "not_authed",
        "token_expired",
    }:
        return ApiError(400, "invalid_target", f"Slack refused the target: {exc}", {field: [str(exc)]})
    return ApiError(409 if exc.error in CONFIG_ERRORS else 502, "slack_refused", f"Slack refused the call: {exc}")


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
    types = [t.strip() for t in args["types"].split(",") if t.strip()]
    if not types or not set(types) <= CHANNEL_TYPES:
        raise ApiError(
            400, "validation_error", f"types: each one of {sorted(CHANNEL_TYPES)}", {"types": ["unknown type"]}
        )
    adapter, _ = _adapter()
    try:
        items = adapter.list_all("conversations.list", "channels", types=",".join(types), exclude_archived=True)
    except SlackError as exc:
        raise _slack_failed(exc) from exc
    return jsonify({"ok": True, "channels": items, "response_metadata": {"next_cursor": ""}})


@blp.route("/integrations/slack/users", methods=["GET"], member_only=True, statuses=(403, 409, 502))
@blp.alt_response(200, schema=SlackUsersSchema, success=True)
def users():
    adapter, _ = _adapter()
    try:
        items = adapter.list_all("users.list", "members")
    except SlackError as exc:
        raise _slack_failed(exc) from exc
    return jsonify({"ok": True, "members": items, "response_metadata": {"next_cursor": ""}})


@blp.route("/integrations/slack/target", methods=["PUT"], member_only=True, statuses=(403, 409, 502))
@blp.arguments(TargetSchema)
@blp.alt_response(200, schema=SlackStatusSchema, success=True)
def put_target(data):
    """Stored only once Slack confirms the bot can post there."""
    adapter, _ = _adapter()
    try:
        checked = adapter.check_target(data["kind"], data["id"])
    except SlackError as exc:
        raise _slack_failed(exc, field="id") from exc
    unit_id = current_unit()
    session = db()
    conn = session.get(SlackConnection, unit_id) or SlackConnection(unit_id=unit_id)
    conn.target_kind, conn.target_id, conn.last_error = checked["kind"], checked["id"], None
    session.add(conn)
    session.commit()
    try_kick_alerts(state(), unit_id, reconfigured=True)  # alerts that waited for a target go now
    return jsonify(status(unit_id))


class TestSentSchema(StrictSchema):
    message = fields.String()
    channel = fields.String(metadata={"description": "where Slack posted it"})
    ts = fields.String(metadata={"description": "the message's Slack timestamp"})


@blp.route("/integrations/slack/test", methods=["POST"], member_only=True, statuses=(403, 409, 502))
@blp.alt_response(200, schema=TestSentSchema, success=True)
@blp.arguments(TestMessageSchema)
def send_test(data):
    adapter, _ = _adapter()
    text = data.get("text") or "LeadPulse test message: lead alerts for this organization unit will look like this."
    try:
        posted = adapter.post(
            adapter.channel_for(data["kind"], data["id"]),
            text=text,
            blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        )
    except SlackError as exc:
        raise _slack_failed(exc, field="id") from exc
    return jsonify({"message": "test message sent", "channel": posted["channel"], "ts": posted["ts"]})
