"""HUBSPOT_ACCESS_TOKEN, SLACK_BOT_TOKEN and SLACK_ALERT_CHANNEL serve only the OUs LEADPULSE_DEFAULT_INTEGRATION_UNITS
names (the first organization's by default): another organization's leads never reach the operator's portal, its
alerts never reach the operator's channel, and it cannot list the operator's workspace."""

import uuid

import pytest

from config import ALL_UNITS, Settings
from models.accounts import create_unit
from models.db import session_factory
from models.hubspot_sync_state import hubspot_served_units
from models.integration_defaults import default_serves, units_served_by_default
from tests.auth_helpers import member_client
from tests.conftest import Api
from tests.fakes import FakeHubSpot, FakeSlack
from tests.helpers import create_levels, published_ruleset, settle
from tests.test_hubspot_webhooks import add_source, deliver
from webapp import create_app

TOKEN, BOT = "pat-na1-0123456789abcdef", "xoxb-operator-token"
UPDATE = "/crm/v3/objects/contacts/batch/update"


def app_from_env(monkeypatch, **env):
    """The web app and the in-process worker both read these from the environment, as in production."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = create_app(Settings.from_env())
    app.testing = True
    return app


def scoring(api):
    create_levels(api)  # Hot from 60
    published_ruleset(api, {"demo_request": 30})


def hot(api, lead_id, email):
    for _ in range(2):
        body = {
            "lead_id": lead_id,
            "event_type": "demo_request",
            "aliases": [{"alias_kind": "email", "raw_value": email}],
        }
        assert api.post("/ingest", json=body).status_code == 202


def test_the_setting_takes_star_or_ids_and_refuses_names():
    unit, org = str(uuid.uuid4()), str(uuid.uuid4()).upper()
    parse = lambda value: Settings.from_env({"LEADPULSE_DEFAULT_INTEGRATION_UNITS": value}).default_integration_units
    assert Settings.from_env({}).default_integration_units is None
    assert parse(" ") is None
    assert parse("*") == ALL_UNITS
    assert parse(f"{unit}, {org},{unit}") == (unit, org.lower())
    for bad in ("Acme", f"{unit},Main", f"*,{unit}"):
        with pytest.raises(SystemExit, match="LEADPULSE_DEFAULT_INTEGRATION_UNITS"):
            parse(bad)


def test_which_ous_the_defaults_serve(settings, clean, tenant, other_tenant):
    """Unset: the first organization's OUs (also one added later); a list: those OUs and organizations; *: all."""
    Session = session_factory(settings.database_url)
    with Session() as s, s.begin():
        later = create_unit(s, tenant.org_id, "Later").id
    everyone = {tenant.unit_id, later, other_tenant.unit_id}

    def served(units):
        with Session() as s:
            cfg = Settings(default_integration_units=units)
            one_by_one = {u for u in everyone if default_serves(s, cfg, u)}
            assert units_served_by_default(s, cfg) == one_by_one
            assert units_served_by_default(s, cfg, {tenant.unit_id}) == one_by_one & {tenant.unit_id}
            return one_by_one

    assert served(None) == {tenant.unit_id, later}
    assert served((other_tenant.unit_id,)) == {other_tenant.unit_id}
    assert served((other_tenant.org_id, later)) == {other_tenant.unit_id, later}
    assert served(ALL_UNITS) == everyone
    with Session() as s:  # the sweep syncs the OUs the token serves, never the others
        env = Settings(hubspot_access_token=TOKEN)
        assert hubspot_served_units(s, env) == sorted([tenant.unit_id, later])
        assert hubspot_served_units(s, Settings()) == []


def test_another_organization_never_writes_to_the_operators_portal(
    settings, clean, tenant, other_tenant, monkeypatch, run_worker
):
    with FakeHubSpot(tokens=[TOKEN]) as fake:
        app = app_from_env(monkeypatch, HUBSPOT_API_BASE=fake.url, HUBSPOT_ACCESS_TOKEN=TOKEN)
        ours, theirs = Api(app.test_client(), tenant), Api(app.test_client(), other_tenant)
        for api in (ours, theirs):
            scoring(api)
        ada, bob = fake.add_contact("ada@x.io"), fake.add_contact("bob@x.io")  # contacts of the operator's portal
        hot(theirs, "eve", "ada@x.io")  # another organization's lead with one of those emails
        hot(ours, "bob", "bob@x.io")
        settle(app, run_worker)
        written = [item["id"] for call in fake.requests_to(UPDATE) for item in call.body["inputs"]]
        assert set(written) == {bob}  # twice, if the sync the level table's creation kicked ran before scoring
        assert "engagement_score" not in fake.contact_by_email("ada@x.io")["properties"]
        assert fake.contact_by_email("bob@x.io")["properties"]["engagement_score"] == "60"
        mine, other = ours.get("/integrations/hubspot").json, theirs.get("/integrations/hubspot").json
        assert (mine["connected"], mine["token_source"]) == (True, "environment")
        assert (other["connected"], other["token_source"], other["pending"]) == (False, None, 1)  # waits, not lost
        r = theirs.post("/integrations/hubspot/sync")
        assert r.status_code == 409 and r.json["error"]["code"] == "not_connected"
        assert ada not in written


def test_another_organizations_webhook_creations_wait_for_its_own_token(
    settings, clean, tenant, other_tenant, monkeypatch
):
    """A contact.creation is not read with the operator's token: it waits for the OU's own connection."""
    with FakeHubSpot(tokens=[TOKEN]) as fake:
        app = app_from_env(monkeypatch, HUBSPOT_API_BASE=fake.url, HUBSPOT_ACCESS_TOKEN=TOKEN)
        client = app.test_client()
        source = add_source(client, other_tenant)
        contact = fake.add_contact("ada@x.io")
        event = {"objectId": int(contact), "eventId": 1, "subscriptionType": "contact.creation"}
        assert deliver(client, source["url"], [event]).json["pending"] == 1
        assert fake.requests == []  # nothing asked of the operator's portal


def test_another_organization_never_uses_the_operators_slack(
    settings, clean, tenant, other_tenant, monkeypatch, run_worker
):
    with FakeSlack(bot_token=BOT) as fake:
        channel = fake.add_channel("sales")
        app = app_from_env(monkeypatch, SLACK_API_BASE=fake.base_url, SLACK_BOT_TOKEN=BOT, SLACK_ALERT_CHANNEL=channel)
        ours, theirs = Api(app.test_client(), tenant), Api(app.test_client(), other_tenant)
        for api in (ours, theirs):
            scoring(api)
        mine, their = app.test_client(), app.test_client()  # a member of each organization, in its own browser
        my_member, their_member = member_client(mine, tenant), member_client(their, other_tenant)
        status = their.get("/integrations/slack", headers=their_member).json
        assert (status["connected"], status["token_source"], status["default_target_id"]) == (False, None, None)
        assert status["alerts"]["delivery"] == "not configured"
        for method, path, body in (
            ("get", "/integrations/slack/channels", None),
            ("get", "/integrations/slack/users", None),
            ("post", "/integrations/slack/test", {"kind": "channel", "id": channel}),
            ("put", "/integrations/slack/target", {"kind": "channel", "id": channel}),
        ):
            r = getattr(their, method)(path, json=body, headers=their_member)
            assert r.status_code == 409 and r.json["error"]["code"] == "not_connected", path
        status = mine.get("/integrations/slack", headers=my_member).json
        assert (status["connected"], status["token_source"], status["default_target_id"]) == (
            True,
            "environment",
            channel,
        )
        listed = mine.get("/integrations/slack/channels", headers=my_member).json["channels"]
        assert [c["id"] for c in listed] == [channel]
        hot(theirs, "eve", "eve@globex.io")
        hot(ours, "ada", "ada@acme.io")
        settle(app, run_worker)
        assert [m["text"] for m in fake.messages] == ["ada@acme.io entered Hot with a score of 60"]
        alerts = their.get("/integrations/slack", headers=their_member).json["alerts"]
        assert (alerts["pending"], alerts["sent"]) == (1, 0)  # waits for the organization's own Slack


@pytest.mark.parametrize("named", ["unit", "org", "star"])
def test_the_operator_names_the_served_ous(settings, clean, tenant, other_tenant, monkeypatch, named):
    """With the other organization named (by OU id, by organization id, or all by *), the defaults serve it."""
    value = {"unit": other_tenant.unit_id, "org": other_tenant.org_id, "star": "*"}[named]
    with FakeHubSpot(tokens=[TOKEN]) as hubspot, FakeSlack(bot_token=BOT) as slack:
        app = app_from_env(
            monkeypatch,
            HUBSPOT_API_BASE=hubspot.url,
            HUBSPOT_ACCESS_TOKEN=TOKEN,
            SLACK_API_BASE=slack.base_url,
            SLACK_BOT_TOKEN=BOT,
            LEADPULSE_DEFAULT_INTEGRATION_UNITS=value,
        )
        for t, served in ((other_tenant, True), (tenant, named == "star")):
            client = app.test_client()
            assert Api(client, t).get("/integrations/hubspot").json["connected"] is served
            headers = member_client(client, t)
            assert client.get("/integrations/slack", headers=headers).json["connected"] is served
            assert client.get("/integrations/slack/users", headers=headers).status_code == (200 if served else 409)
