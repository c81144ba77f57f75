"""Alert settings (defaults from DESIGN.md, validation) and the org's Slack app credentials (secret write-only)."""

from sqlalchemy import select

from models.slack import SlackApp
from tests.auth_helpers import member_client
from tests.conftest import Api
from tests.helpers import create_levels


def test_alert_defaults_follow_the_level_named_hot(api):
    assert api.get("/settings/ou/alerts").json == {
        "alert_min_level": None,
        "alert_min_level_is_default": True,
        "cooldown_hours": 24,
        "digest_on_reclassification": True,
    }
    ids = create_levels(api)
    got = api.get("/settings/ou/alerts").json
    assert got["alert_min_level"] == {"id": ids["Hot"], "name": "Hot"} and got["alert_min_level_is_default"] is True


def test_alert_settings_update_validate_and_reset(api, client, other_tenant):
    ids = create_levels(api)
    r = api.put(
        "/settings/ou/alerts",
        json={"alert_min_level": "very hot", "cooldown_hours": 48, "digest_on_reclassification": False},
    )
    assert r.status_code == 200
    assert r.json == {
        "alert_min_level": {"id": ids["Very Hot"], "name": "Very Hot"},
        "alert_min_level_is_default": False,
        "cooldown_hours": 48,
        "digest_on_reclassification": False,
    }
    assert (
        api.put("/settings/ou/alerts", json={"alert_min_level": ids["Warm"]}).json["alert_min_level"]["name"] == "Warm"
    )
    for body, field in [
        ({"alert_min_level": "Lukewarm"}, "alert_min_level"),
        ({"cooldown_hours": -1}, "cooldown_hours"),
        ({"cooldown_hours": "1"}, "cooldown_hours"),
        ({"cooldown_hours": 10**6}, "cooldown_hours"),
        ({"digest_on_reclassification": "perhaps"}, "digest_on_reclassification"),
        ({"channel": "x"}, "channel"),
    ]:
        r = api.put("/settings/ou/alerts", json=body)
        assert r.status_code == 400 and field in r.json["error"]["details"], (body, r.json)
    assert api.get("/settings/ou/alerts").json["alert_min_level"]["name"] == "Warm"  # unchanged by the failures
    # another OU's level is not a level here
    their = create_levels(Api(client, other_tenant))
    assert api.put("/settings/ou/alerts", json={"alert_min_level": their["Hot"]}).status_code == 400
    r = api.put("/settings/ou/alerts", json={"alert_min_level": None})
    assert r.json["alert_min_level"]["name"] == "Hot" and r.json["alert_min_level_is_default"] is True
    # deleting the chosen level falls back to the default
    api.put("/settings/ou/alerts", json={"alert_min_level": "Warm"})
    assert api.delete(f"/engagement-levels/{ids['Warm']}").status_code == 204
    assert api.get("/settings/ou/alerts").json["alert_min_level"]["name"] == "Hot"


def test_slack_app_secret_is_write_only_and_encrypted(client, tenant, app, api):
    headers = member_client(client, tenant)
    assert client.get("/settings/slack-app", headers=headers).json["configured"] is False
    secret = "0123456789abcdef0123456789abcdef"
    r = client.put(
        "/settings/slack-app", json={"client_id": "1234567890.987654321", "client_secret": secret}, headers=headers
    )
    assert r.status_code == 200 and r.json["configured"] is True and r.json["client_secret_set"] is True
    assert secret not in r.get_data(as_text=True)
    assert secret not in client.get("/settings/slack-app", headers=headers).get_data(as_text=True)
    with app.extensions["leadpulse"].Session() as s:
        stored = s.execute(select(SlackApp.client_secret_encrypted)).scalar()
    assert secret not in stored
    for body, field in [
        ({"client_id": "abc", "client_secret": secret}, "client_id"),
        ({"client_id": "1.2"}, "client_secret"),
        ({"client_id": "1.2", "client_secret": "short"}, "client_secret"),
    ]:
        r = client.put("/settings/slack-app", json=body, headers=headers)
        assert r.status_code == 400 and field in r.json["error"]["details"]
    assert api.put("/settings/slack-app", json={"client_id": "1.2", "client_secret": secret}).status_code == 403
