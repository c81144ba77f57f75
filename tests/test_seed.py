"""Seed data for a first run: POST /admin/seed, /admin/wipe-seed and `leadpulse demo`."""

import dataclasses

from sqlalchemy import func, select

from models.events import Event
from models.seed import SEED_LEADS, email_of
from models.seed_records import SeedRecord
from tests.auth_helpers import member_client
from tests.conftest import Api
from tests.fakes import FakeHubSpot, FakeSlack
from tests.helpers import create_levels, ingest, leads_by_id, published_ruleset, settle

SEEDED = {lead for lead, _, _ in SEED_LEADS}


def count(app, model, **where):
    with app.extensions["leadpulse"].Session() as s:
        return s.execute(select(func.count()).select_from(model).filter_by(**where)).scalar()


def test_seed_gives_a_fresh_ou_levels_rules_and_scored_leads_and_is_safe_to_repeat(app, client, tenant, run_worker):
    headers = member_client(client, tenant)
    r = client.post("/admin/seed", headers=headers)
    assert r.status_code == 201, r.json
    assert r.json["levels_created"] == ["Cold", "Warm", "Hot", "Very Hot"] and set(r.json["leads"]) == SEEDED
    assert r.json["events_accepted"] == sum(len(story) for _, _, story in SEED_LEADS)
    settle(app, run_worker)
    leads = leads_by_id(Api(client, tenant))
    assert {
        lead: (leads[lead]["score"], leads[lead]["level"]["name"]) for lead in ("seed-ada", "seed-alan", "seed-linus")
    } == {"seed-ada": (88, "Very Hot"), "seed-alan": (28, "Warm"), "seed-linus": (8, "Cold")}
    again = client.post("/admin/seed", headers=headers)
    assert again.status_code == 201 and again.json["events_accepted"] == 0 and again.json["levels_created"] == []
    assert again.json["ruleset_id"] == r.json["ruleset_id"]
    settle(app, run_worker)
    assert leads_by_id(Api(client, tenant))["seed-ada"]["score"] == 88
    assert count(app, Event) == r.json["events_accepted"]


def test_wipe_removes_only_seed_data_and_rescores_the_rest(app, client, tenant, other_tenant, run_worker):
    api = Api(client, tenant)
    create_levels(api)
    published_ruleset(api, {"page_view": 10}, name="Mine", primary=True)
    ingest(api, "own-lead", "page_view")
    headers = member_client(client, tenant)
    seeded = client.post("/admin/seed", headers=headers).json
    assert seeded["levels_created"] == []  # the OU's own levels are kept
    theirs = app.test_client()
    their_headers = member_client(theirs, other_tenant)
    assert theirs.post("/admin/seed", headers=their_headers).status_code == 201
    settle(app, run_worker)
    assert (
        leads_by_id(api)["seed-ada"]["score"] == 10
    )  # scored by our primary ruleset (one page_view), not the demo one
    r = client.post("/admin/wipe-seed", headers=headers)
    assert r.status_code == 200 and r.json == {"leads_deleted": 6, "rulesets_deleted": 1, "levels_deleted": 0}
    assert set(leads_by_id(api)) == {"own-lead"} and leads_by_id(api)["own-lead"]["score"] == 10
    assert [rs["name"] for rs in api.get("/rulesets").json] == ["Mine"]
    assert count(app, SeedRecord, unit_id=tenant.unit_id) == 0
    # the other OU's seed is untouched, and wiping it removes its levels too (it has no leads of its own)
    assert set(leads_by_id(Api(client, other_tenant))) == SEEDED
    assert theirs.post("/admin/wipe-seed", headers=their_headers).json == {
        "leads_deleted": 6,
        "rulesets_deleted": 1,
        "levels_deleted": 4,
    }
    assert leads_by_id(Api(client, other_tenant)) == {} and count(app, SeedRecord) == 0
    assert client.post("/admin/wipe-seed", headers=headers).json == {
        "leads_deleted": 0,
        "rulesets_deleted": 0,
        "levels_deleted": 0,
    }


def test_admin_needs_a_member(client, tenant):
    assert Api(client, tenant).post("/admin/seed").status_code == 403
    assert client.post("/admin/wipe-seed").status_code == 401


def test_demo_command_prints_the_table_and_what_reached_hubspot_and_slack(settings, clean, tenant):
    from worker.demo import run_demo

    with FakeHubSpot(tokens=["pat-demo-0123456789"]) as hubspot, FakeSlack(bot_token="xoxb-demo") as slack:
        for lead in SEEDED - {"seed-linus"}:
            hubspot.add_contact(email_of(lead))
        channel = slack.add_channel("sales")
        configured = dataclasses.replace(
            settings,
            hubspot_api_base=hubspot.url,
            hubspot_access_token="pat-demo-0123456789",
            slack_api_base=slack.base_url,
            slack_bot_token="xoxb-demo",
            slack_alert_channel=channel,
        )
        out = run_demo(configured, tenant.unit_id)
        assert "seed-ada         Ada Lovelace         ada@example.com             88  Very Hot" in out
        assert "HubSpot: 5 contacts written, 1 reported in GET /integrations/hubspot/failures" in out
        assert hubspot.contact_by_email("ada@example.com")["properties"]["engagement_score"] == "88"
        assert "Slack alerts:" in out and out.count("[sent]") == 3
        assert sorted(m["text"] for m in slack.messages) == [
            "Ada Lovelace (ada@example.com) entered Very Hot with a score of 88",
            "Grace Hopper (grace@example.com) entered Hot with a score of 51",
            "Katherine Johnson (katherine@example.com) entered Very Hot with a score of 80",
        ]
    assert "0 new events" in run_demo(settings, tenant.unit_id)  # a repeat adds nothing


def test_demo_without_hubspot_or_slack_says_what_would_go(settings, clean, tenant):
    from worker.demo import run_demo

    out = run_demo(settings, tenant.unit_id)
    assert "HubSpot: not configured; 6 contacts would get engagement_score/engagement_level:" in out
    assert "  ada@example.com: 88" in out
    assert "Slack is not configured: pending alerts wait" in out and out.count("[pending]") == 3


def test_seed_refuses_an_ou_whose_leads_it_would_rescore(client, tenant, api):
    ingest(api, "real-lead", "page_view")
    r = client.post("/admin/seed", headers=member_client(client, tenant))
    assert r.status_code == 409 and "primary ruleset" in r.json["error"]["message"]
    assert set(leads_by_id(api)) == {"real-lead"}
