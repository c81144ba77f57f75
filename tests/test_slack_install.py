"""Installing Slack per OU with OAuth (fake Slack over real HTTP, the real slack-sdk), channels, users, target, test."""

import dataclasses
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from sqlalchemy import select, text

from models.slack import SLACK_BOTS, SlackConnection
from tests.auth_helpers import member_client
from tests.conftest import Api
from tests.fakes import FakeSlack
from webapp import create_app

CLIENT_ID, CLIENT_SECRET = "1111.2222", "test-client-secret-0123456789"


@pytest.fixture
def fake_slack():
    with FakeSlack(client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as fake:
        yield fake


@pytest.fixture
def slack(settings, clean, tenant, fake_slack):
    """(member test client headers, app): the org's Slack app is configured, nothing installed yet."""
    app = create_app(dataclasses.replace(settings, slack_api_base=fake_slack.base_url))
    app.testing = True
    client = app.test_client()
    headers = member_client(client, tenant)
    r = client.put(
        "/settings/slack-app", json={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET}, headers=headers
    )
    assert r.status_code == 200
    return client, headers, app


def begin_install(client, headers, fake):
    """POST /install, then the browser at Slack: approve, and follow the redirect back to our callback."""
    r = client.post("/integrations/slack/install", headers=headers)
    assert r.status_code == 200, r.json
    url = r.json["authorize_url"]
    assert url.startswith(f"{fake.url}/oauth/v2/authorize?")
    q = parse_qs(urlparse(url).query)
    assert q["client_id"] == [CLIENT_ID] and "chat:write" in q["scope"][0] and q["state"][0]
    assert q["redirect_uri"] == ["http://localhost/integrations/slack/callback"]
    at_slack = requests.get(url, allow_redirects=False, timeout=5)
    assert at_slack.status_code == 302
    back = urlparse(at_slack.headers["Location"])
    return back.path, parse_qs(back.query)


def install(client, headers, fake):
    path, q = begin_install(client, headers, fake)
    r = client.get(path, query_string={"code": q["code"][0], "state": q["state"][0]})
    assert r.status_code == 302 and r.headers["Location"].endswith("/home?slack=connected"), r.get_data(as_text=True)
    return q


def connection(app, unit_id):
    with app.extensions["leadpulse"].Session() as s:
        return s.get(SlackConnection, unit_id)


def test_install_stores_an_encrypted_bot_token_and_reports_status(slack, fake_slack, tenant):
    client, headers, app = slack
    before = client.get("/integrations/slack", headers=headers).json
    assert before["connected"] is False and before["alerts"]["delivery"] == "not configured"
    assert before["authorize_url"] == "http://localhost/integrations/slack/install"
    install(client, headers, fake_slack)
    status = client.get("/integrations/slack", headers=headers)
    body = status.json
    assert body["connected"] is True and body["token_source"] == "install"
    assert (
        body["team_id"] == "T0000INST" and body["team_name"] == "Installed Team" and body["bot_user_id"] == "U0000INST"
    )
    assert body["alerts"]["delivery"] == "not configured"  # no target yet
    token = next(t for t in fake_slack.tokens if t.startswith("xoxb-T0000INST"))
    assert token not in status.get_data(as_text=True)
    with app.extensions["leadpulse"].Session() as s:
        raw = s.execute(text("SELECT bot_token FROM slack_bots")).scalars().all()
        assert len(raw) == 1 and token not in raw[0] and raw[0].startswith("gAAAA")  # Fernet
        raw_inst = s.execute(text("SELECT bot_token FROM slack_installations")).scalar()
        assert token not in raw_inst
    # the GET form of install redirects the browser straight to Slack
    r = client.get("/integrations/slack/install", headers=headers)
    assert r.status_code == 302 and r.headers["Location"].startswith(f"{fake_slack.url}/oauth/v2/authorize?")


def test_callback_refuses_reused_forged_and_expired_states_and_stores_nothing(slack, fake_slack, tenant):
    client, headers, app = slack
    path, q = begin_install(client, headers, fake_slack)
    forged = client.get(path, query_string={"code": q["code"][0], "state": "not-a-state-we-issued"})
    assert (
        forged.status_code == 400
        and forged.json["error"]["code"] == "invalid_state"
        and "state" in forged.json["error"]["details"]
    )
    assert client.get(path, query_string={"code": q["code"][0]}).status_code == 400  # no state at all
    nul = client.get(path, query_string={"code": q["code"][0], "state": "\x00abc"})
    assert nul.status_code == 400 and nul.json["error"]["code"] == "invalid_state"
    elsewhere = app.test_client().get(
        path, query_string={"code": q["code"][0], "state": q["state"][0]}
    )  # no state cookie
    assert elsewhere.status_code == 400 and "another browser" in elsewhere.json["error"]["message"]
    assert connection(app, tenant.unit_id) is None
    assert client.get(path, query_string={"code": q["code"][0], "state": q["state"][0]}).status_code == 302
    team_before = connection(app, tenant.unit_id).installed_at
    reused = client.get(path, query_string={"code": q["code"][0], "state": q["state"][0]})
    assert reused.status_code == 400 and reused.json["error"]["code"] == "invalid_state"
    assert connection(app, tenant.unit_id).installed_at == team_before
    # an expired state is refused too
    path, q = begin_install(client, headers, fake_slack)
    with app.extensions["leadpulse"].Session() as s, s.begin():
        s.execute(text("UPDATE slack_oauth_states SET expire_at = expire_at - interval '1 hour'"))
    expired = client.get(path, query_string={"code": q["code"][0], "state": q["state"][0]})
    assert expired.status_code == 400 and expired.json["error"]["code"] == "invalid_state"


def test_callback_with_a_bad_code_or_a_denial_stores_nothing(slack, fake_slack, tenant):
    client, headers, app = slack
    path, q = begin_install(client, headers, fake_slack)
    r = client.get(path, query_string={"code": "123.forged", "state": q["state"][0]})
    assert (
        r.status_code == 400
        and r.json["error"]["code"] == "oauth_failed"
        and "invalid_code" in r.json["error"]["message"]
    )
    assert connection(app, tenant.unit_id) is None
    path, q = begin_install(client, headers, fake_slack)
    r = client.get(path, query_string={"error": "access_denied&slack=connected\r\nX: y", "state": q["state"][0]})
    assert r.status_code == 302 and connection(app, tenant.unit_id) is None
    assert r.headers["Location"] == "/home?slack=error&reason=access_deniedslackconnectedxy"
    with app.extensions["leadpulse"].Session() as s:
        assert s.execute(select(SLACK_BOTS.c.id)).first() is None


def test_install_needs_the_org_app_and_a_member(settings, clean, tenant, fake_slack):
    app = create_app(dataclasses.replace(settings, slack_api_base=fake_slack.base_url))
    client = app.test_client()
    headers = member_client(client, tenant)
    r = client.post("/integrations/slack/install", headers=headers)
    assert r.status_code == 409 and r.json["error"]["code"] == "slack_app_not_configured"
    assert client.get("/integrations/slack", headers=headers).json["authorize_url"] is None
    assert (
        Api(client, tenant).post("/integrations/slack/install").status_code == 403
    )  # an API credential is not a member
    assert client.post("/integrations/slack/install").status_code == 401


def test_channels_and_users_come_from_every_page(slack, fake_slack):
    client, headers, _ = slack
    assert client.get("/integrations/slack/channels", headers=headers).status_code == 409  # not connected
    install(client, headers, fake_slack)
    for i in range(450):
        fake_slack.add_channel(f"chan-{i:03d}")
    fake_slack.add_channel("secret", private=True, member=True)
    fake_slack.add_channel("old", archived=True)
    for i in range(230):
        fake_slack.add_user(f"user{i}")
    r = client.get("/integrations/slack/channels", headers=headers)
    assert r.status_code == 200 and r.json["ok"] is True
    names = [c["name"] for c in r.json["channels"]]
    assert len(names) == 451 and "secret" in names and "old" not in names
    assert len(fake_slack.requests_to("/api/conversations.list")) == 3
    public = client.get("/integrations/slack/channels", query_string={"types": "public_channel"}, headers=headers).json
    assert "secret" not in [c["name"] for c in public["channels"]]
    bad = client.get("/integrations/slack/channels", query_string={"types": "public_channel,dms"}, headers=headers)
    assert bad.status_code == 400 and "types" in bad.json["error"]["details"]
    users = client.get("/integrations/slack/users", headers=headers).json
    assert len(users["members"]) == 231 and users["ok"] is True
    fake_slack.fail_next(1, 429, method="users.list", retry_after=7)
    limited = client.get("/integrations/slack/users", headers=headers)
    assert limited.status_code == 503 and limited.headers["Retry-After"] == "7"
    fake_slack.fail_next(1, 503, method="users.list")
    assert client.get("/integrations/slack/users", headers=headers).status_code == 502


def test_target_must_be_postable_and_bad_targets_change_nothing(slack, fake_slack, tenant):
    client, headers, app = slack
    assert (
        client.put("/integrations/slack/target", json={"kind": "channel", "id": "C123"}, headers=headers).status_code
        == 409
    )
    install(client, headers, fake_slack)
    sales = fake_slack.add_channel("sales")
    outside = fake_slack.add_channel("outside", member=False)
    archived = fake_slack.add_channel("archive", archived=True)
    jane = fake_slack.add_user("jane")
    r = client.put("/integrations/slack/target", json={"kind": "channel", "id": sales}, headers=headers)
    assert r.status_code == 200 and r.json["default_target_id"] == sales and r.json["alerts"]["delivery"] == "ok"
    for body, error in [
        ({"kind": "channel", "id": outside}, "not_in_channel"),
        ({"kind": "channel", "id": archived}, "is_archived"),
        ({"kind": "channel", "id": "C99999999"}, "channel_not_found"),
        ({"kind": "user", "id": "U99999999"}, "user_not_found"),
    ]:
        r = client.put("/integrations/slack/target", json=body, headers=headers)
        assert r.status_code == 400 and r.json["error"]["details"] == {"id": [error]}, (body, r.json)
    for body, field in [
        ({"kind": "group", "id": sales}, "kind"),
        ({"kind": "channel", "id": "#sales"}, "id"),
        ({"kind": "channel"}, "id"),
    ]:
        r = client.put("/integrations/slack/target", json=body, headers=headers)
        assert r.status_code == 400 and field in r.json["error"]["details"], (body, r.json)
    assert connection(app, tenant.unit_id).target_id == sales  # unchanged by the refusals
    r = client.put("/integrations/slack/target", json={"kind": "user", "id": jane}, headers=headers)
    assert r.status_code == 200 and r.json["default_target_kind"] == "user"


def test_test_message_goes_to_a_channel_or_a_dm(slack, fake_slack):
    client, headers, _ = slack
    install(client, headers, fake_slack)
    sales = fake_slack.add_channel("sales")
    jane = fake_slack.add_user("jane")
    r = client.post(
        "/integrations/slack/test", json={"kind": "channel", "id": sales, "text": "hello sales"}, headers=headers
    )
    assert r.status_code == 200 and r.json["message"] == "test message sent"
    assert fake_slack.messages[-1]["channel"] == sales and fake_slack.messages[-1]["text"] == "hello sales"
    r = client.post("/integrations/slack/test", json={"kind": "user", "id": jane}, headers=headers)
    assert r.status_code == 200 and r.json["channel"] == "D" + jane[1:]
    assert len(fake_slack.requests_to("/api/conversations.open")) == 1
    fake_slack.fail_channel(sales, "channel_not_found")
    r = client.post("/integrations/slack/test", json={"kind": "channel", "id": sales}, headers=headers)
    assert r.status_code == 400 and r.json["error"]["details"] == {"id": ["channel_not_found"]}
    r = client.post("/integrations/slack/test", json={"kind": "channel", "id": sales, "text": ""}, headers=headers)
    assert r.status_code == 400 and "text" in r.json["error"]["details"]


def test_disconnect_forgets_the_token_and_other_ous_see_nothing(slack, fake_slack, tenant, other_tenant):
    client, headers, app = slack
    install(client, headers, fake_slack)
    theirs = app.test_client()  # its own cookie jar: the active OU is a cookie
    other = member_client(theirs, other_tenant)
    assert theirs.get("/integrations/slack", headers=other).json["connected"] is False
    assert theirs.delete("/integrations/slack", headers=other).status_code == 404
    assert client.delete("/integrations/slack", headers=headers).status_code == 204
    assert client.get("/integrations/slack", headers=headers).json["connected"] is False
    with app.extensions["leadpulse"].Session() as s:
        assert s.execute(select(SLACK_BOTS.c.id)).first() is None
        assert s.execute(text("SELECT count(*) FROM slack_installations")).scalar() == 0
    assert client.delete("/integrations/slack", headers=headers).status_code == 404


def test_environment_token_and_channel_serve_an_ou_without_install(settings, clean, tenant, fake_slack):
    sales = fake_slack.add_channel("sales")
    app = create_app(
        dataclasses.replace(
            settings, slack_api_base=fake_slack.base_url, slack_bot_token="xoxb-test-token", slack_alert_channel=sales
        )
    )
    client = app.test_client()
    headers = member_client(client, tenant)
    body = client.get("/integrations/slack", headers=headers).json
    assert body["connected"] is True and body["token_source"] == "environment" and body["default_target_id"] == sales
    assert body["alerts"]["delivery"] == "ok"
    assert (
        client.post("/integrations/slack/test", json={"kind": "channel", "id": sales}, headers=headers).status_code
        == 200
    )


def test_the_state_cookie_is_httponly_lax_and_secure_on_the_callback_path_only(slack):
    client, headers, _ = slack
    cookie = client.post("/integrations/slack/install", headers=headers).headers["Set-Cookie"]
    parts = {part.strip() for part in cookie.split(";")}
    assert {"HttpOnly", "Secure", "SameSite=Lax", "Path=/integrations/slack/callback"} <= parts, cookie
