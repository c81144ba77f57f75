"""The Integrations page: how HubSpot sync and Slack alerts are doing for the OU, from the same status the API's
GET /integrations/hubspot and /integrations/slack answer (webapp/services/integration_status.py), and connecting
HubSpot with a private-app token through the API's own code (webapp/services/hubspot_connect.py)."""

from __future__ import annotations

from flask import request, url_for

from webapp.app_state import external_url
from webapp.auth import current_unit
from webapp.console.base import FormErrors, form_errors, load, page, render, see_other
from webapp.errors import ApiError
from webapp.resources.hubspot_routes import ConnectSchema
from webapp.services.hubspot_connect import connect_hubspot
from webapp.services.integration_status import hubspot_status, slack_status

TOKEN_SOURCES = {"ou": "this organization unit's own", "environment": "the server's default (environment)"}


def _page(status=200, *, errors=None, done=None):
    unit_id = current_unit()
    return render(
        "integrations.html",
        status,
        hubspot=hubspot_status(unit_id),
        slack=slack_status(unit_id, external_url(url_for("slack.install_redirect"))),
        token_sources=TOKEN_SOURCES,
        errors=errors,
        done=done,
        active="integrations",
    )


@page("/integrations")
def integrations():
    return _page(done=request.args.get("connected"))


@page("/integrations/hubspot", methods=("POST",))
def connect_hubspot_page():
    """The token is checked against HubSpot before anything is stored; it is never shown again."""
    values = {"access_token": request.form.get("access_token", "").strip() or None}
    values = {k: v for k, v in values.items() if v is not None}
    values["create_missing_contacts"] = request.form.get("create_missing_contacts") == "on"
    try:
        data = load(ConnectSchema(), values)
        connect_hubspot(current_unit(), data["access_token"], data["create_missing_contacts"])
    except FormErrors as exc:
        return _page(exc.status, errors=exc)
    except ApiError as exc:
        resp = _page(exc.status, errors=form_errors(exc))
        if "Retry-After" in exc.headers:
            resp.headers["Retry-After"] = exc.headers["Retry-After"]
        return resp
    return see_other("integrations", connected="hubspot")
