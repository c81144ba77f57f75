"""The console's Integrations page on the server, against the fake HubSpot and the fake Slack over real HTTP: HubSpot's
failures, resync and disconnect; Slack's OAuth install coming back to the page, its channels and people, the target,
a test message and Slack's refusals; the alert settings; every form's bad input inline, a Viewer refused, CSRF."""

from __future__ import annotations

import dataclasses
import html
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from tests.auth_helpers import member_client
from tests.conftest import Api
from tests.console_helpers import csrf_token, form_post, sign_in
from tests.fakes import FakeHubSpot, FakeSlack
from tests.helpers import create_levels, published_ruleset
from webapp import create_app

TOKEN = "pat-na1-console-0123456789"
CLIENT_ID, CLIENT_SECRET = "1111.2222", "test-client-secret-0123456789"
PAGE = "/app/integrations"
UPDATE = "/crm/v3/objects/contacts/batch/update"


def text(r) -> str:
    return r.get_data(as_text=True)


def shown(r) -> str:
    return html.unescape(text(r))


@pytest.fixture
def fakes():
    with (
        FakeHubSpot(tokens=[TOKEN]) as hubspot,
        FakeSlack(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as slack,
    ):
        yield hubspot, slack


@pytest.fixture
def app(settings, clean, fakes, monkeypatch):
    """The app (and the worker, which reads the environment) on the fake HubSpot and Slack."""
    hubspot, slack = fakes
    monkeypatch.setenv("HUBSPOT_API_BASE", hubspot.url)
    monkeypatch.setenv("SLACK_API_BASE", slack.base_url)
    app = create_app(dataclasses.replace(settings, hubspot_api_base=hubspot.url, slack_api_base=slack.base_url))
    app.testing = True
    return app


def send(api, email, event_type):
    body = {"aliases": [{"alias_kind": "email", "raw_value": email}], "event_type": event_type}
    assert api.post("/ingest", json=body).status_code == 202


def post(client, action, data, page=PAGE):
    return form_post(client, page, action, data)


def set_slack_app(client, tenant):
    body = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    assert client.put("/settings/slack-app", json=body, headers=member_client(client, tenant)).status_code == 200


def install_from_console(client, slack):
    """Add to Slack: the console sends the browser to Slack, which approves and sends it back to the callback."""
    r = client.get("/app/integrations/slack/install")
    assert r.status_code == 302 and r.headers["Location"].startswith(f"{slack.url}/oauth/v2/authorize?"), text(r)
    at_slack = requests.get(r.headers["Location"], allow_redirects=False, timeout=5)
    assert at_slack.status_code == 302
    back = urlparse(at_slack.headers["Location"])
    return back.path, parse_qs(back.query)


def test_hubspot_failures_resync_and_disconnect(client, app, api, tenant, other_tenant, fakes, run_worker):
    hubspot, _ = fakes
    create_levels(api)
    published_ruleset(api, {"demo_request": 30, "page_view": 5})
    sign_in(client, tenant.email, tenant.password)
    page = text(client.get(PAGE))
    assert "Resync every lead" not in page and "Disconnect HubSpot" not in page  # nothing to resync yet
    r = post(client, "/app/integrations/hubspot/sync", {})
    assert r.status_code == 409 and "connect HubSpot first" in text(r)  # the API's own refusal, on the page
    r = post(client, "/app/integrations/hubspot", {"access_token": TOKEN, "create_missing_contacts": "false"})
    assert r.status_code == 303
    run_worker()
    ada = hubspot.add_contact("ada@x.io")
    send(api, "ada@x.io", "demo_request")
    run_worker()
    with hubspot.lock:
        del hubspot.contacts[ada]  # deleted in HubSpot: the next update is refused with HubSpot's message
    send(api, "ada@x.io", "page_view")
    send(api, "ghost@x.io", "demo_request")  # no contact at all
    run_worker()
    failures = api.get("/integrations/hubspot/failures").json
    assert {f["email"] for f in failures} == {"ada@x.io", "ghost@x.io"}
    refused = next(f for f in failures if f["email"] == "ada@x.io")
    assert "Could not get some CONTACT objects" in refused["error"]

    page = text(client.get(PAGE))
    assert "Failed contacts (2)" in page and '<div id="hubspot-failed"><dt>Failed contacts</dt><dd>2</dd>' in page
    listed = client.get("/app/integrations/hubspot/failures")
    assert listed.status_code == 200
    for f in failures:
        assert f["email"] in shown(listed) and html.escape(f["error"]) in text(listed)
    assert ">35<" in text(listed)  # the score that failed to sync
    theirs = app.test_client()  # another OU's member: none of these failures, and their leads are a 404 page
    sign_in(theirs, other_tenant.email, other_tenant.password)
    assert "No contact failed" in text(theirs.get("/app/integrations/hubspot/failures"))
    lead_id = failures[0]["lead_id"]
    assert (
        theirs.get(f"/app/leads/{lead_id}").status_code == 404
        and client.get(f"/app/leads/{lead_id}").status_code == 200
    )
    first = shown(client.get("/app/integrations/hubspot/failures?page=1&limit=1"))
    second = shown(client.get("/app/integrations/hubspot/failures?page=2&limit=1"))
    assert 'rel="next"' in first and 'rel="prev"' in second and 'rel="next"' not in second
    assert failures[0]["email"] in first and failures[1]["email"] in second  # newest first, as the API
    for query, message in (
        ("page=0", "Must be greater than or equal to 1"),
        ("limit=abc", "Not a valid integer"),
        ("limit=501", "Must be greater than or equal to 1 and less than or equal to 500"),
    ):
        r = client.get(f"/app/integrations/hubspot/failures?{query}")
        assert r.status_code == 400 and message in shown(r) and 'role="alert"' in text(r), query

    hubspot.add_contact("ghost@x.io")
    r = post(client, "/app/integrations/hubspot/sync", {})
    assert r.status_code == 303 and r.headers["Location"] == "/app/integrations?done=resync"
    assert "Resync queued" in text(client.get(r.headers["Location"]))
    assert api.get("/integrations/hubspot").json["pending"] == 2  # every lead waits again
    before = len(hubspot.requests_to(UPDATE))
    run_worker()  # the resync the form enqueued
    assert len(hubspot.requests_to(UPDATE)) > before
    assert [f["email"] for f in api.get("/integrations/hubspot/failures").json] == ["ada@x.io"]  # still deleted
    listed = shown(client.get("/app/integrations/hubspot/failures"))
    assert "ada@x.io" in listed and "ghost@x.io" not in listed and "1 in all" in listed

    confirm = client.get("/app/integrations/hubspot/disconnect")
    assert confirm.status_code == 200 and "Disconnect HubSpot?" in text(confirm)
    assert api.get("/integrations/hubspot").json["connected"] is True  # the confirm page changed nothing
    r = form_post(client, "/app/integrations/hubspot/disconnect", "/app/integrations/hubspot/disconnect", {})
    assert r.status_code == 303 and api.get("/integrations/hubspot").json["connected"] is False
    r = form_post(client, PAGE, "/app/integrations/hubspot/disconnect", {})
    assert r.status_code == 404 and "HubSpot is not connected" in text(r)


def slack_status(client, tenant) -> dict:
    return client.get("/integrations/slack", headers=member_client(client, tenant)).json  # members only


def test_slack_installs_through_oauth_and_comes_back_to_the_console(client, app, tenant, fakes):
    _, slack = fakes
    sign_in(client, tenant.email, tenant.password)
    r = client.get("/app/integrations/slack/install")
    assert r.status_code == 409 and "Slack app first" in text(r)  # the organization has no Slack app yet
    action = "/app/integrations/slack/app"
    good = {"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}
    for change, field, message in (
        ({"client_id": ""}, "client_id", "Missing data for required field"),
        ({"client_id": "not-a-client-id"}, "client_id", "is not a Slack client id"),
        ({"client_secret": "short"}, "client_secret", "Length must be between 16 and 200"),
    ):
        r = post(client, action, {**good, **change})
        assert r.status_code == 400 and message in shown(r) and f'id="{field}-error"' in text(r), change
        assert CLIENT_SECRET not in text(r)  # a secret typed is never echoed back
    r = post(client, action, good)
    assert r.status_code == 303 and "Slack app is set" in text(client.get(r.headers["Location"]))
    assert client.get("/settings/slack-app", headers=member_client(client, tenant)).json["client_id"] == CLIENT_ID
    assert CLIENT_SECRET not in text(client.get(PAGE))
    page = text(client.get(PAGE))
    assert "Add to Slack" in page and 'href="/app/integrations/slack/install" hx-boost="false"' in page
    path, q = install_from_console(client, slack)
    assert path == "/integrations/slack/callback" and q["code"] and q["state"]
    r = client.get(path, query_string={"code": q["code"][0], "state": q["state"][0]})
    assert r.status_code == 302 and r.headers["Location"] == "/app/integrations?slack=connected"
    page = text(client.get(r.headers["Location"]))
    assert "Slack is installed" in page and "Installed Team" in page and "Pick where alerts go" in page
    status = slack_status(client, tenant)
    assert status["connected"] and status["team_id"] == "T0000INST"
    owner = member_client(client, tenant)
    entries = client.get("/admin/audit-logs", query_string={"search": "slack"}, headers=owner).json["items"]
    seen = {(e["method"], e["path"], e["status"]) for e in entries}
    assert {("GET", "/app/integrations/slack/install", 302), ("GET", "/integrations/slack/callback", 302)} <= seen

    # Refused and expired states, Slack's refusals: back on the page, saying why; nothing more stored.
    reused = client.get(path, query_string={"code": q["code"][0], "state": q["state"][0]})
    assert reused.headers["Location"] == "/app/integrations?slack=error&reason=invalid_state"
    said = shown(client.get(reused.headers["Location"]))
    assert "Slack was not installed: the install link was unknown, had expired" in said
    path, q = install_from_console(client, slack)
    r = client.get(path, query_string={"state": q["state"][0], "error": "access_denied"})
    assert r.headers["Location"] == "/app/integrations?slack=error&reason=access_denied"
    assert "it was cancelled in Slack" in shown(client.get(r.headers["Location"]))
    path, q = install_from_console(client, slack)
    r = client.get(path, query_string={"state": q["state"][0], "code": "not-a-code-slack-gave"})
    assert r.headers["Location"] == "/app/integrations?slack=error&reason=invalid_code"
    assert "Slack refused it (invalid_code)" in shown(client.get(r.headers["Location"]))
    r = client.get(path, query_string={"state": "<script>x</script>", "code": "x"})
    assert r.headers["Location"] == "/app/integrations?slack=error&reason=invalid_state"
    forged = shown(client.get("/app/integrations?slack=error&reason=<b>pwned</b>"))
    assert "<b>pwned</b>" not in text(client.get("/app/integrations?slack=error&reason=<b>pwned</b>"))
    assert "Slack refused it (<b>pwned</b>)" in forged  # escaped text, never markup
    assert slack_status(client, tenant)["team_id"] == "T0000INST"

    # An install started through the API in this browser goes where the API's did: /home.
    headers = member_client(client, tenant)
    url = client.post("/integrations/slack/install", headers=headers).json["authorize_url"]
    back = urlparse(requests.get(url, allow_redirects=False, timeout=5).headers["Location"])
    q = parse_qs(back.query)
    r = client.get(back.path, query_string={"code": q["code"][0], "state": q["state"][0]})
    assert r.headers["Location"] == "/home?slack=connected"


def test_slack_target_test_message_and_disconnect(client, app, tenant, fakes):
    _, slack = fakes
    leads = slack.add_channel("leads")
    slack.add_channel("random")
    secret = slack.add_channel("board", private=True, member=False)
    for n in range(230):  # more than one of Slack's pages (200): the API reads every page, so does the page
        slack.add_channel(f"zz-{n:03d}")
    grace = slack.add_user("grace", real_name="Grace Hopper")
    slack.add_user("old", deleted=True)
    sign_in(client, tenant.email, tenant.password)
    r = client.get("/app/integrations/slack/target")
    assert r.status_code == 409 and "connect Slack first" in text(r)
    set_slack_app(client, tenant)
    path, q = install_from_console(client, slack)
    client.get(path, query_string={"code": q["code"][0], "state": q["state"][0]})

    target = client.get("/app/integrations/slack/target")
    page = shown(target)
    assert target.status_code == 200 and f'value="channel:{leads}">#leads<' in page and "#zz-229" in page
    assert f'value="user:{grace}">Grace Hopper (@grace)<' in page and "old" not in page.split("People")[1]
    assert secret not in page  # private and the app not in it: Slack does not list it
    assert "232 channels" in page and len(slack.requests_to("/api/conversations.list")) >= 2
    found = shown(client.get("/app/integrations/slack/target?q=GRACE"))
    assert "Grace Hopper" in found and "#leads" not in found and "0 channels and 1 people" in found
    slack.fail_next(1, 429, method="conversations.list", retry_after=7)  # Slack's rate limit: the page says when
    limited = client.get("/app/integrations/slack/target")
    assert limited.status_code == 503 and limited.headers["Retry-After"] == "7" and "slow down" in shown(limited)

    target_page = "/app/integrations/slack/target"
    for value, status, message in (
        ("", 400, "Missing data for required field"),
        ("channel:not an id", 400, "is not a Slack channel or user id"),
        ("group:C123", 400, "Must be one of: channel, user"),
        ("channel:C99999999", 400, "channel_not_found"),
    ):
        r = post(client, target_page, {"target": value}, page=target_page)
        assert r.status_code == status and message in shown(r), (value, shown(r)[:500])
        assert 'id="target-error"' in text(r) and 'aria-invalid="true"' in text(r)
    assert slack_status(client, tenant)["default_target_id"] is None
    r = post(client, target_page, {"target": f"channel:{leads}"}, page=target_page)
    assert r.status_code == 303 and r.headers["Location"] == "/app/integrations?done=target"
    status = slack_status(client, tenant)
    assert status["default_target_kind"] == "channel" and status["default_target_id"] == leads

    # a test message from the page arrives at Slack; from the target page, before saving, too
    r = post(client, "/app/integrations/slack/test", {"target": f"channel:{leads}", "text": "Hello from the console"})
    assert r.status_code == 303 and "Test message sent" in text(client.get(r.headers["Location"]))
    assert slack.messages[-1]["channel"] == leads and slack.messages[-1]["text"] == "Hello from the console"
    r = post(client, "/app/integrations/slack/test", {"target": f"user:{grace}", "back": "target"}, page=target_page)
    assert (
        r.status_code == 303 and r.headers["Location"] == f"/app/integrations/slack/target?tested=1&target=user:{grace}"
    )
    kept = shown(client.get(r.headers["Location"]))
    assert f'value="user:{grace}" selected>' in kept and "Test message sent" in kept
    assert slack.messages[-1]["channel"] == "D" + grace[1:] and "LeadPulse test message" in slack.messages[-1]["text"]
    r = post(client, "/app/integrations/slack/test", {"target": f"channel:{leads}", "text": "x" * 3001})
    assert r.status_code == 400 and "Length must be between 1 and 3000" in shown(r) and 'id="text-error"' in text(r)
    slack.fail_channel(leads, "is_archived")
    r = post(client, "/app/integrations/slack/test", {"target": f"channel:{leads}"})
    assert r.status_code == 400 and "Slack refused the target: is_archived" in shown(r)
    token = next(t for t in slack.tokens if t.startswith("xoxb-T0000INST"))
    slack.revoke_token(token)
    r = post(client, "/app/integrations/slack/test", {"target": f"channel:{leads}"})
    assert r.status_code == 409 and "Slack refused the call: invalid_auth" in shown(r)

    confirm = client.get("/app/integrations/slack/disconnect")
    assert confirm.status_code == 200 and "Disconnect Slack?" in text(confirm) and "Installed Team" in text(confirm)
    r = form_post(client, "/app/integrations/slack/disconnect", "/app/integrations/slack/disconnect", {})
    assert r.status_code == 303 and r.headers["Location"] == "/app/integrations?done=slack-disconnected"
    assert slack_status(client, tenant)["connected"] is False
    assert "Add to Slack" in text(client.get(PAGE))


def test_alert_settings_through_the_api_s_schema(client, app, api, tenant, other_tenant):
    ids = create_levels(api)
    theirs = create_levels(Api(client, other_tenant))
    sign_in(client, tenant.email, tenant.password)
    page = shown(client.get(PAGE))
    assert "The default (Hot)" in page and "Very Hot or higher" in page
    action = "/app/integrations/alerts"
    good = {"alert_min_level": ids["Very Hot"], "cooldown_hours": "48", "digest_on_reclassification": "false"}
    for change, field, message in (
        ({"cooldown_hours": "-1"}, "cooldown_hours", "Must be greater than or equal to 0"),
        ({"cooldown_hours": "soon"}, "cooldown_hours", "Not a valid integer"),
        ({"cooldown_hours": "100000"}, "cooldown_hours", "less than or equal to 720"),
        ({"alert_min_level": "Lukewarm"}, "alert_min_level", "no such level"),
        ({"alert_min_level": theirs["Hot"]}, "alert_min_level", "no such level"),  # another OU's level is none here
        ({"digest_on_reclassification": "perhaps"}, "digest_on_reclassification", "Not a valid boolean"),
    ):
        r = post(client, action, {**good, **change})
        assert r.status_code == 400 and message in shown(r), (change, shown(r)[:300])
        assert f'id="{field}-error"' in text(r), change
        assert "Traceback" not in text(r)
    assert api.get("/settings/ou/alerts").json["cooldown_hours"] == 24  # unchanged by the failures
    r = post(client, action, good)
    assert r.status_code == 303 and "Alert settings saved" in text(client.get(r.headers["Location"]))
    assert api.get("/settings/ou/alerts").json == {
        "alert_min_level": {"id": ids["Very Hot"], "name": "Very Hot"},
        "alert_min_level_is_default": False,
        "cooldown_hours": 48,
        "digest_on_reclassification": False,
    }
    page = text(client.get(PAGE))
    assert f'<option value="{ids["Very Hot"]}" selected>' in page and 'value="48"' in page
    r = post(client, action, {**good, "alert_min_level": ""})  # blank: back to the default
    assert r.status_code == 303 and api.get("/settings/ou/alerts").json["alert_min_level_is_default"] is True


def test_a_viewer_sees_no_controls_and_is_refused_and_posts_need_csrf(client, app, api, tenant, fakes):
    create_levels(api)
    set_slack_app(client, tenant)
    owner = member_client(client, tenant)
    body = {"first_name": "Vera", "email": "vera@example.com", "password": "a long enough password", "role": "Viewer"}
    assert client.post("/org-members", json=body, headers=owner).status_code == 201
    assert api.put("/integrations/hubspot", json={"access_token": TOKEN}).status_code == 200
    viewer = app.test_client()
    sign_in(viewer, "vera@example.com", "a long enough password")
    page = text(viewer.get(PAGE))
    assert "Connected" in page and "Failed contacts" in page  # reading is allowed
    controls = (
        "Add to Slack",
        "Resync",
        "Disconnect",
        "Connect HubSpot",
        "Save alert settings",
        "<select",
        "Client ID",
    )
    for control in controls:
        assert control not in page, control
    assert viewer.get("/app/integrations/hubspot/failures").status_code == 200
    token = csrf_token(page)  # the sign-out form's
    for path in (
        "/app/integrations/hubspot",
        "/app/integrations/hubspot/sync",
        "/app/integrations/hubspot/disconnect",
        "/app/integrations/slack/target",
        "/app/integrations/slack/test",
        "/app/integrations/slack/disconnect",
        "/app/integrations/alerts",
        "/app/integrations/slack/app",
    ):
        r = viewer.post(path, data={"csrf_token": token, "target": "channel:C1", "access_token": TOKEN})
        assert r.status_code == 403 and "Owner" in text(r), path
    for path in (
        "/app/integrations/slack/install",
        "/app/integrations/slack/target",
        "/app/integrations/hubspot/disconnect",
        "/app/integrations/slack/disconnect",
    ):
        r = viewer.get(path)
        assert r.status_code == 403 and 'data-error-code="forbidden"' in text(r), path
    assert api.get("/integrations/hubspot").json["connected"] is True

    # An Operator changes the OU's integrations but not the organization's Slack app (an Owner of every unit's).
    body |= {"first_name": "Otto", "email": "otto@example.com", "role": "Operator"}
    assert client.post("/org-members", json=body, headers=owner).status_code == 201
    operator = app.test_client()
    sign_in(operator, "otto@example.com", "a long enough password")
    page = text(operator.get(PAGE))
    assert "Add to Slack" in page and "Resync every lead" in page and "Client ID" not in page
    r = operator.post("/app/integrations/slack/app", data={"csrf_token": csrf_token(page), "client_id": "9.9"})
    assert r.status_code == 403 and 'data-error-code="forbidden"' in text(r)

    sign_in(client, tenant.email, tenant.password)
    for path in ("/app/integrations/hubspot/sync", "/app/integrations/alerts", "/app/integrations/hubspot/disconnect"):
        r = client.post(path, data={"cooldown_hours": "1"})
        assert r.status_code == 403 and "reload the page" in text(r), path
        r = client.post(path, data={"cooldown_hours": "1", "csrf_token": token})  # another session's token
        assert r.status_code == 403, path
    assert api.get("/integrations/hubspot").json["connected"] is True
    assert api.get("/settings/ou/alerts").json["cooldown_hours"] == 24
