"""An OU's Slack install, lists, alert target, test message and disconnect, for the /integrations/slack routes and the
console's Integrations page alike (docs/console.md): one function per use, the same refusals for both."""

from __future__ import annotations

import hmac

from slack_sdk.oauth import AuthorizeUrlGenerator
from slack_sdk.oauth.installation_store import Installation
from sqlalchemy import delete, select

from integrations.secretbox import decrypt, encrypt
from integrations.slack import SlackAdapter, SlackError, authorize_url_base
from integrations.slack_alerts import CONFIG_ERRORS
from integrations.slack_store import CLIENT_SECRET_PURPOSE, EncryptedInstallationStore, resolve, state_store
from models.base import utcnow
from models.members import owns_every_unit, role_in
from models.slack import SlackApp, SlackConnection, SlackInstallRequest
from webapp.access import ROLE_GRANTS
from webapp.app_state import close_db, db, state
from webapp.auth import plausible_id
from webapp.errors import ApiError
from webapp.schema_base import rfc3339
from worker.jobs import try_kick_alerts

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
CHANNEL_TYPES = {"public_channel", "private_channel", "mpim", "im"}
TEST_TEXT = "LeadPulse test message: lead alerts for this organization unit will look like this."
# Slack's refusals of the token itself: not the target's fault, so never shown beside the target's field
TOKEN_ERRORS = {"invalid_auth", "token_revoked", "account_inactive", "not_authed", "token_expired"}


def slack_app(org_id: str) -> tuple[str, str] | None:
    """The organization's Slack app (client id, client secret), or None until an Owner sets it."""
    app = db().get(SlackApp, org_id)
    if app is None:
        return None
    secret = decrypt(state().secret_key, CLIENT_SECRET_PURPOSE, app.client_secret_encrypted)
    return (app.client_id, secret) if secret else None


def slack_app_view(org_id: str) -> dict:
    """The organization's Slack app as GET /settings/slack-app shows it: never the secret."""
    app = db().get(SlackApp, org_id)
    return {
        "configured": app is not None,
        "client_id": app.client_id if app else None,
        "client_secret_set": app is not None,
        "updated_at": rfc3339(app.updated_at) if app else None,
    }


def set_slack_app(org_id: str, member_id: str, client_id: str, client_secret: str) -> dict:
    """Organization-wide, so only an Owner of every OU may set it; the secret is stored encrypted, never returned."""
    session = db()
    if not owns_every_unit(session, org_id, member_id):
        raise ApiError(
            403, "forbidden", "the Slack app serves every organization unit: only an Owner of all of them may set it"
        )
    app = session.get(SlackApp, org_id) or SlackApp(org_id=org_id)
    app.client_id = client_id
    app.client_secret_encrypted = encrypt(state().secret_key, CLIENT_SECRET_PURPOSE, client_secret)
    session.add(app)
    session.commit()
    return slack_app_view(org_id)


def begin_install(org_id: str, unit_id: str, member_id: str, redirect_uri: str) -> tuple[str, str]:
    """(Slack's authorize URL, its single-use state) for this member to install the org's app into the OU."""
    app = slack_app(org_id)
    if app is None:
        raise ApiError(
            409, "slack_app_not_configured", "set the organization's Slack app first: PUT /settings/slack-app"
        )
    settings = state().settings
    close_db()  # slack-sdk's store writes on its own connection: hold no transaction meanwhile (SQLite)
    issued = state_store(settings.database_url).issue()
    with state().WriterSession() as s, s.begin():
        s.add(SlackInstallRequest(state=issued, unit_id=unit_id, org_id=org_id, member_id=member_id))
    generator = AuthorizeUrlGenerator(
        client_id=app[0],
        scopes=SCOPES,
        redirect_uri=redirect_uri,
        authorization_url=authorize_url_base(settings.slack_api_base),
    )
    return generator.generate(issued), issued


def consume_state(state_value: str, browser_state: str) -> SlackInstallRequest:
    """The install request a callback's state names, used up: single use even under a race (our row is deleted by
    exactly one request, and slack-sdk's state checks expiry); browser_state is the one this browser was given."""
    if not plausible_id(state_value, 200):
        raise ApiError(400, "invalid_state", "missing or malformed OAuth state", {"state": ["missing or malformed"]})
    if not hmac.compare_digest(browser_state, state_value):
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
    if "configure" not in ROLE_GRANTS.get(role_in(db(), row.member_id, row.unit_id) or "", ()):
        raise ApiError(403, "forbidden", "whoever started this install may no longer configure this organization unit")
    return row


def finish_install(req, code: str, redirect_uri: str) -> None:
    """Slack's code exchanged for the bot token, stored encrypted; nothing is stored unless Slack grants it."""
    if not code or len(code) > 300:
        raise ApiError(400, "validation_error", "missing OAuth code", {"code": ["missing"]})
    app = slack_app(req.org_id)
    if app is None:
        raise ApiError(409, "slack_app_not_configured", "the organization's Slack app is not configured")
    settings = state().settings
    close_db()  # no transaction held open across Slack calls
    try:
        grant = SlackAdapter(None, settings.slack_api_base).oauth_access(app[0], app[1], code, redirect_uri)
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


def _adapter(unit_id: str) -> SlackAdapter:
    conn = db().get(SlackConnection, unit_id)
    target = resolve(db(), unit_id, conn, state().settings, state().secret_key)
    if target.token is None:
        raise ApiError(409, "not_connected", "connect Slack first: POST /integrations/slack/install")
    close_db()  # no transaction held open across Slack calls
    return SlackAdapter(target.token, state().settings.slack_api_base)


def slack_failed(exc: SlackError, field: str | None = None) -> ApiError:
    """Slack's refusal as the API answers it; a refusal of the target itself named beside field."""
    if exc.rate_limited:
        return ApiError(
            503,
            "slack_rate_limited",
            "Slack asks us to slow down; retry later",
            headers={"Retry-After": str(int(exc.retry_after or 1))},
        )
    if exc.transient:
        return ApiError(502, "slack_unavailable", f"Slack failed: {exc}")
    if field and exc.error in CONFIG_ERRORS - TOKEN_ERRORS:
        return ApiError(400, "invalid_target", f"Slack refused the target: {exc}", {field: [str(exc)]})
    return ApiError(409 if exc.error in CONFIG_ERRORS else 502, "slack_refused", f"Slack refused the call: {exc}")


def channel_types(types: str) -> list[str]:
    found = [t.strip() for t in types.split(",") if t.strip()]
    if not found or not set(found) <= CHANNEL_TYPES:
        raise ApiError(
            400, "validation_error", f"types: each one of {sorted(CHANNEL_TYPES)}", {"types": ["unknown type"]}
        )
    return found


def list_channels(unit_id: str, types: str = "public_channel,private_channel") -> list[dict]:
    """Every unarchived channel of these types, as Slack's conversations.list gives them (every page read)."""
    kinds = channel_types(types)
    adapter = _adapter(unit_id)
    try:
        return adapter.list_all("conversations.list", "channels", types=",".join(kinds), exclude_archived=True)
    except SlackError as exc:
        raise slack_failed(exc) from exc


def list_users(unit_id: str) -> list[dict]:
    """Every member of the workspace, as Slack's users.list gives them (every page read)."""
    adapter = _adapter(unit_id)
    try:
        return adapter.list_all("users.list", "members")
    except SlackError as exc:
        raise slack_failed(exc) from exc


def set_target(unit_id: str, kind: str, target_id: str) -> None:
    """Stored only once Slack confirms the bot can post there; alerts that waited for a target go now."""
    adapter = _adapter(unit_id)
    try:
        checked = adapter.check_target(kind, target_id)
    except SlackError as exc:
        raise slack_failed(exc, field="id") from exc
    session = db()
    conn = session.get(SlackConnection, unit_id) or SlackConnection(unit_id=unit_id)
    conn.target_kind, conn.target_id, conn.last_error = checked["kind"], checked["id"], None
    session.add(conn)
    session.commit()
    try_kick_alerts(state(), unit_id, reconfigured=True)


def send_test(unit_id: str, kind: str, target_id: str, text: str | None = None) -> dict:
    """A test message to the target; Slack's refusal is raised as the API answers it."""
    adapter = _adapter(unit_id)
    text = text or TEST_TEXT
    try:
        return adapter.post(
            adapter.channel_for(kind, target_id),
            text=text,
            blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text}}],
        )
    except SlackError as exc:
        raise slack_failed(exc, field="id") from exc


def disconnect_slack(unit_id: str) -> None:
    """The OU's install is forgotten; the workspace's token too when no other OU uses it."""
    session = db()
    conn = session.get(SlackConnection, unit_id)
    if conn is None or conn.team_id is None:
        raise ApiError(404, "not_found", "Slack is not installed for this organization unit")
    team = (conn.client_id, conn.enterprise_id, conn.team_id)
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
