"""The Integrations page: how HubSpot sync and Slack alerts are doing for the OU, from the same status the API's
GET /integrations/hubspot and /integrations/slack answer (webapp/services/integration_status.py)."""

from __future__ import annotations

from flask import url_for

from webapp.app_state import external_url
from webapp.auth import current_unit
from webapp.console.base import page, render
from webapp.services.integration_status import hubspot_status, slack_status

TOKEN_SOURCES = {"ou": "this organization unit's own", "environment": "the server's default (environment)"}


@page("/integrations")
def integrations():
    unit_id = current_unit()
    return render(
        "integrations.html",
        hubspot=hubspot_status(unit_id),
        slack=slack_status(unit_id, external_url(url_for("slack.install_redirect"))),
        token_sources=TOKEN_SOURCES,
        active="integrations",
    )
