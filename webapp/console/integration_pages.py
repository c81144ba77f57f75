"""The Integrations page: how HubSpot sync and Slack alerts are doing for the OU, from the same status the API's
GET /integrations/hubspot and /integrations/slack answer (webapp/services/integration_status.py), and everything the
API does with them, through its own code: HubSpot's connect, resync, failures and disconnect
(webapp/services/hubspot_connect.py); Slack's OAuth install, target, test message and disconnect
(webapp/services/slack_connect.py); the alert settings (webapp/services/alert_settings.py). docs/console.md."""

from __future__ import annotations

from flask import request, url_for

from webapp import audit_trail
from webapp.app_state import external_url
from webapp.auth import current_unit
from webapp.console.base import (
    FormErrors,
    attempt,
    flags,
    form_errors,
    form_values,
    load,
    page,
    principal,
    redirect_to,
    render,
    see_other,
)
from webapp.console.lead_pages import levels_of_unit
from webapp.crud import page_of
from webapp.errors import ApiError
from webapp.resources.alert_settings import AlertSettingsIn, SlackAppIn
from webapp.resources.hubspot_routes import ConnectSchema
from webapp.resources.slack_routes import TargetSchema, TestMessageSchema, browser_install
from webapp.schema_base import PageArgs
from webapp.services.alert_settings import effective_alert_settings, update_alert_settings
from webapp.services.hubspot_connect import (
    FAILURES_ORDER,
    connect_hubspot,
    disconnect_hubspot,
    failure_items,
    failures_statement,
    resync_hubspot,
)
from webapp.services.integration_status import hubspot_status, slack_status
from webapp.services.slack_connect import (
    disconnect_slack,
    list_channels,
    list_users,
    send_test,
    set_slack_app,
    set_target,
    slack_app_view,
)

TOKEN_SOURCES = {
    "ou": "this organization unit's own",
    "environment": "the server's default (environment)",
    "install": "installed for this organization unit",
}
FAILURES_PAGE = 25
DONE = {
    "hubspot": "HubSpot is connected: LeadPulse syncs every lead's score and level to its contact.",
    "resync": "Resync queued: every lead of this organization unit is written to HubSpot again.",
    "hubspot-disconnected": "HubSpot is disconnected: this organization unit's token is forgotten.",
    "slack-disconnected": "Slack is disconnected: alerts wait until it is installed again.",
    "target": "Alerts now go where you picked.",
    "alerts": "Alert settings saved.",
    "test": "Test message sent: look for it in Slack.",
    "slack-app": "The organization's Slack app is set: each unit installs it with Add to Slack.",
}
# Why an install started here came back without one: the callback names our error code or Slack's own (a word only)
SLACK_REASONS = {
    "invalid_state": "the install link was unknown, had expired (10 minutes), was already used or was opened in "
    "another browser",
    "access_denied": "it was cancelled in Slack",
    "forbidden": "whoever started it may no longer configure this organization unit",
    "slack_unavailable": "Slack failed during the install",
    "slack_app_not_configured": "the organization's Slack app is not set",
    "validation_error": "Slack sent back no authorization code",
}


def _slack_outcome() -> dict | None:
    """What the OAuth callback said when it brought the browser back here."""
    if request.args.get("slack") == "connected":
        return {"ok": True, "message": "Slack is installed. Pick where alerts go, then send a test message."}
    if request.args.get("slack") == "error":
        reason = request.args.get("reason", "")[:50]
        why = SLACK_REASONS.get(reason) or f"Slack refused it ({reason or 'no reason given'})"
        return {"ok": False, "message": f"Slack was not installed: {why}. Nothing was stored; start again."}
    return None


def _page(status=200, *, errors=None, form=None, values=None):
    unit_id = current_unit()
    done = request.args.get("done") or request.args.get("connected")
    return render(
        "integrations.html",
        status,
        hubspot=hubspot_status(unit_id),
        slack=slack_status(unit_id, external_url(url_for("slack.install_redirect"))),
        alerts=effective_alert_settings(unit_id),
        slack_app=slack_app_view(principal().org_id),
        levels=levels_of_unit(),
        token_sources=TOKEN_SOURCES,
        errors=errors,
        form=form,
        values=values or {},
        done=DONE.get(done or ""),
        slack_outcome=_slack_outcome(),
        active="integrations",
    )


@page("/integrations")
def integrations():
    return _page()


# ----- HubSpot


@page("/integrations/hubspot", methods=("POST",))
def connect_hubspot_page():
    """The token is checked against HubSpot before anything is stored; it is never shown again."""
    values = form_values(("access_token",))
    values.update(flags(("create_missing_contacts",)))
    try:
        data = load(ConnectSchema(), values)
        connect_hubspot(current_unit(), data["access_token"], data["create_missing_contacts"])
    except FormErrors as exc:
        return _page(exc.status, errors=exc, form="hubspot")
    except ApiError as exc:
        return _page(exc.status, errors=form_errors(exc), form="hubspot")
    return see_other("integrations", connected="hubspot")


@page("/integrations/hubspot/sync", methods=("POST",))
def resync_hubspot_page():
    """As POST /integrations/hubspot/sync: every lead waits to be written again, and the sync is enqueued."""
    _, errors = attempt(lambda: resync_hubspot(current_unit()))
    if errors:
        return _page(errors.status, errors=errors, form="resync")
    return see_other("integrations", done="resync")


@page("/integrations/hubspot/failures")
def hubspot_failures():
    """The contacts HubSpot refused, with its message, paged as GET /integrations/hubspot/failures?page= pages."""
    values = form_values(("page", "limit"), ints=("page", "limit"), source=request.args)
    args, errors = attempt(lambda: load(PageArgs(), values))
    number, limit = (args or {}).get("page", 1), (args or {}).get("limit", FAILURES_PAGE)
    rows, total = page_of(failures_statement(current_unit()), number, limit, FAILURES_ORDER)
    return render(
        "hubspot_failures.html",
        errors.status if errors else 200,
        errors=errors,
        failures=failure_items(rows),
        total=total,
        page=number,
        limit=limit,
        more=number * limit < total,
        active="integrations",
    )


@page("/integrations/hubspot/disconnect", need="configure")
def confirm_hubspot_disconnect():
    return render("integration_disconnect.html", which="hubspot", status=hubspot_status(current_unit()))


@page("/integrations/hubspot/disconnect", methods=("POST",))
def disconnect_hubspot_page():
    _, errors = attempt(lambda: disconnect_hubspot(current_unit()))
    if errors:
        return _page(errors.status, errors=errors, form="hubspot")
    return see_other("integrations", done="hubspot-disconnected")


# ----- Slack


@page("/integrations/slack/install", need="configure")
@audit_trail.audited  # a GET that starts an install, as GET /integrations/slack/install is
def install_slack_page():
    """A link, not a form: the page's CSP lets a form post only to this site, and this goes on to Slack. The callback
    brings the browser back here (webapp/resources/slack_routes.py)."""
    try:
        return browser_install(from_console=True)
    except ApiError as exc:
        return _page(exc.status, errors=form_errors(exc), form="slack")


@page("/integrations/slack/app", methods=("POST",), need="own")
def set_slack_app_page():
    """As PUT /settings/slack-app: the organization's app, set by an Owner of every unit; the secret never shown."""
    values = form_values(("client_id", "client_secret"))
    p = principal()
    _, errors = attempt(lambda: set_slack_app(p.org_id, p.member_id, **load(SlackAppIn(), values)))
    if errors:
        values.pop("client_secret", None)
        return _page(errors.status, errors=errors, form="slack-app", values=values)
    return see_other("integrations", done="slack-app")


def _target_values() -> dict:
    """The form's one control, "channel:C0123" or "user:U0123", as the API's kind and id."""
    kind, _, target_id = request.form.get("target", "").partition(":")
    return {k: v for k, v in (("kind", kind), ("id", target_id)) if v} | form_values(("text",))


def _on_target(errors: FormErrors) -> FormErrors:
    """The API names kind and id; the form has one control for both."""
    fields = {}
    for name, said in errors.fields.items():
        fields.setdefault("target" if name in ("kind", "id") else name, []).extend(said)
    return FormErrors(fields, errors.message, errors.status)


def _target_page(status=200, *, errors=None, chosen=None, tested=False):
    unit_id = current_unit()
    query = request.args.get("q", "").strip()[:100]
    found, list_errors = attempt(lambda: (list_channels(unit_id), list_users(unit_id)))
    channels, users = found or ([], [])
    needle = query.lower()

    def matches(*names) -> bool:
        return not needle or any(needle in (n or "").lower() for n in names)

    channels = sorted(
        (c for c in channels if matches(c.get("name"), c.get("id"))), key=lambda c: (c.get("name") or "").lower()
    )
    users = sorted(
        (
            u
            for u in users
            if not u.get("deleted") and not u.get("is_bot") and matches(u.get("name"), u.get("real_name"), u.get("id"))
        ),
        key=lambda u: (u.get("real_name") or u.get("name") or "").lower(),
    )
    slack = slack_status(unit_id, external_url(url_for("slack.install_redirect")))
    if chosen is None and slack["default_target_id"]:
        chosen = f"{slack['default_target_kind']}:{slack['default_target_id']}"
    return render(
        "slack_target.html",
        list_errors.status if list_errors and status == 200 else status,
        slack=slack,
        channels=channels,
        users=users,
        query=query,
        chosen=chosen,
        tested=tested,
        errors=errors or list_errors,
        active="integrations",
    )


@page("/integrations/slack/target", need="configure")
def slack_target():
    """Slack's own channels and people (every page of conversations.list and users.list, as the API reads them), with
    a search narrowing them by name."""
    return _target_page(tested=request.args.get("tested") == "1", chosen=request.args.get("target"))


@page("/integrations/slack/target", methods=("POST",))
def set_slack_target():
    values = _target_values()
    values.pop("text", None)
    _, errors = attempt(lambda: set_target(current_unit(), **_kind_and_id(load(TargetSchema(), values))))
    if errors:
        return _target_page(errors.status, errors=_on_target(errors), chosen=request.form.get("target"))
    return see_other("integrations", done="target")


def _kind_and_id(data: dict) -> dict:
    return {"kind": data["kind"], "target_id": data["id"]}


@page("/integrations/slack/test", methods=("POST",))
def send_slack_test():
    """As POST /integrations/slack/test; Slack's refusal is shown beside the target. From the target page, back there
    with the target still chosen."""
    from_target = request.form.get("back") == "target"
    values = _target_values()
    _, errors = attempt(
        lambda: send_test(current_unit(), text=values.get("text"), **_kind_and_id(load(TestMessageSchema(), values)))
    )
    if errors:
        errors = _on_target(errors)
        if from_target:
            return _target_page(errors.status, errors=errors, chosen=request.form.get("target"))
        return _page(errors.status, errors=errors, form="test", values=values)
    if from_target:
        back = {"q": request.form.get("q") or None, "target": request.form.get("target") or None}
        return redirect_to(url_for("console.slack_target", tested="1", **back))
    return see_other("integrations", done="test")


@page("/integrations/slack/disconnect", need="configure")
def confirm_slack_disconnect():
    unit_id = current_unit()
    return render(
        "integration_disconnect.html",
        which="slack",
        status=slack_status(unit_id, external_url(url_for("slack.install_redirect"))),
    )


@page("/integrations/slack/disconnect", methods=("POST",))
def disconnect_slack_page():
    _, errors = attempt(lambda: disconnect_slack(current_unit()))
    if errors:
        return _page(errors.status, errors=errors, form="slack")
    return see_other("integrations", done="slack-disconnected")


@page("/integrations/alerts", methods=("POST",))
def save_alert_settings():
    """As PUT /settings/ou/alerts, through its schema: a blank level is the default (the level named Hot)."""
    values = form_values(("alert_min_level", "cooldown_hours"), ints=("cooldown_hours",), nullable=("alert_min_level",))
    values.update(flags(("digest_on_reclassification",)))
    _, errors = attempt(lambda: update_alert_settings(current_unit(), load(AlertSettingsIn(), values)))
    if errors:
        return _page(errors.status, errors=errors, form="alerts", values=values)
    return see_other("integrations", done="alerts")
