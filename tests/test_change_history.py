"""The level history and its revert (every lead reclassified at once, HubSpot's options following, one Slack digest), and
the ruleset history of publishes and unpublishes: who, when, what, the table or rules after it."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import select

from models.levels import LeadLevelChange
from models.tenancy import ApiCredential
from tests.auth_helpers import member_client
from tests.conftest import Api
from tests.fakes import FakeHubSpot, FakeSlack
from tests.helpers import REFERENCE_LEVELS, create_levels, ingest, leads_by_id, published_ruleset, settle
from webapp import create_app
from worker.sweep import sweep_once

HS_TOKEN, BOT = "pat-na1-0123456789abcdef", "xoxb-test-token"
WEIGHTS = {"page_view": 5, "email_open": 10, "demo_request": 30}


def history(api, **query) -> list[dict]:
    r = api.get("/engagement-levels/history", query_string=query)
    assert r.status_code == 200, r.json
    return r.json


def levels_of(api) -> dict[str, str | None]:
    return {lid: (lead["level"] or {}).get("name") for lid, lead in leads_by_id(api).items()}


def table(api) -> list[tuple]:
    return [(lv["name"], lv["min_score"], lv["max_score"]) for lv in api.get("/engagement-levels").json["levels"]]


def credential_name(app, client_id: str) -> tuple[str, str]:
    with app.extensions["leadpulse"].Session() as s:
        cred = s.execute(select(ApiCredential).where(ApiCredential.client_id == client_id)).scalar_one()
        return cred.id, cred.name


def test_history_says_who_when_what_and_the_table_after_it(api, app, client, tenant):
    ids = create_levels(api)
    member = member_client(client, tenant)
    assert client.put(f"/engagement-levels/{ids['Hot']}", json={"max_score": 69}, headers=member).status_code == 200
    assert client.delete(f"/engagement-levels/{ids['Very Hot']}", headers=member).status_code == 204
    entries = history(api)
    assert [e["action"] for e in entries] == [
        "delete",
        "update",
        "create",
        "create",
        "create",
        "create",
    ]  # newest first
    newest = entries[0]
    me = client.get("/me", headers=member).json
    assert newest["who"] == {"kind": "member", "id": me["org_member_id"], "name": tenant.email}
    assert [(lv["name"], lv["min_score"], lv["max_score"]) for lv in newest["levels"]] == [
        ("Cold", 0, 24),
        ("Warm", 25, 49),
        ("Hot", 50, 69),
    ]
    assert newest["levels"][2] == {
        "id": ids["Hot"],
        "name": "Hot",
        "min_score": 50,
        "max_score": 69,
        "color": "#f97316",
        "order": 3,
    }
    assert newest["created_at"].endswith("Z") and newest["reverted_from"] is None
    cred_id, cred_name = credential_name(app, tenant.client_id)
    assert entries[-1]["who"] == {"kind": "credential", "id": cred_id, "name": cred_name}
    assert [len(e["levels"]) for e in entries] == [3, 4, 4, 3, 2, 1]
    page = history(api, page=2, limit=4)
    assert page["total"] == 6 and page["page"] == 2 and page["limit"] == 4
    assert [e["id"] for e in page["history"]] == [e["id"] for e in entries[4:]]


def test_revert_restores_the_table_and_reclassifies_every_lead_at_once(api, app, run_worker):
    ids = create_levels(api)
    published_ruleset(api, WEIGHTS)
    plan = {
        "lead_20": ["email_open", "page_view", "page_view"],
        "lead_35": ["demo_request", "page_view"],
        "lead_65": ["demo_request", "demo_request", "page_view"],
        "lead_90": ["demo_request", "demo_request", "demo_request"],
        "lead_110": ["demo_request"] * 3 + ["email_open", "email_open"],
    }
    for lead, events in plan.items():
        for event_type in events:
            ingest(api, lead, event_type)
    run_worker()
    reference = history(api)[0]  # the four levels of the reference
    before = levels_of(api)
    assert before == {
        "lead_20": "Cold",
        "lead_35": "Warm",
        "lead_65": "Hot",
        "lead_90": "Very Hot",
        "lead_110": "Very Hot",
    }
    # Warm shrinks, Hot grows down to 30, Very Hot loses its top to a new level, Cold is deleted.
    assert api.put(f"/engagement-levels/{ids['Warm']}", json={"max_score": 29}).status_code == 200
    assert api.put(f"/engagement-levels/{ids['Hot']}", json={"min_score": 30, "name": "Warm+"}).status_code == 200
    assert api.put(f"/engagement-levels/{ids['Very Hot']}", json={"max_score": 99}).status_code == 200
    added = api.post("/engagement-levels", json={"name": "Hot", "min_score": 100, "max_score": None}).json["id"]
    assert api.delete(f"/engagement-levels/{ids['Cold']}").status_code == 204
    assert levels_of(api) == {
        "lead_20": None,
        "lead_35": "Warm+",
        "lead_65": "Warm+",
        "lead_90": "Very Hot",
        "lead_110": "Hot",
    }
    with app.extensions["leadpulse"].Session() as s:
        moves_before = s.execute(select(LeadLevelChange.id)).scalars().all()

    r = api.post(f"/engagement-levels/history/{reference['id']}/revert")
    assert r.status_code == 200, r.json
    entry = r.json
    assert entry["action"] == "revert" and entry["reverted_from"] == reference["id"]
    assert entry["levels"] == reference["levels"]  # the same table, with the same ids (Cold back under its own)
    assert entry["who"]["kind"] == "credential"
    assert history(api)[0]["id"] == entry["id"]
    assert table(api) == [(lv["name"], lv["min_score"], lv["max_score"]) for lv in REFERENCE_LEVELS]
    assert {lv["id"] for lv in api.get("/engagement-levels").json["levels"]} == set(ids.values())
    assert added not in {lv["id"] for lv in api.get("/engagement-levels").json["levels"]}
    assert levels_of(api) == before
    with app.extensions["leadpulse"].Session() as s:
        moves = s.execute(select(LeadLevelChange).where(LeadLevelChange.id.not_in(moves_before))).scalars().all()
    assert {(m.from_level_id, m.to_level_id, m.cause) for m in moves} == (
        {
            (None, ids["Cold"], "reconfiguration"),  # lead_20
            (ids["Hot"], ids["Warm"], "reconfiguration"),  # lead_35, from Warm+ (Hot's id renamed)
            (added, ids["Very Hot"], "reconfiguration"),  # lead_110, out of the level the revert removed
        }
    )
    assert len({m.changed_at for m in moves}) == 1  # one reclassification, not one per level

    # Reverting to the revert's own table changes nothing more.
    again = api.post(f"/engagement-levels/history/{entry['id']}/revert")
    assert again.status_code == 200 and levels_of(api) == before


def test_revert_finds_only_the_ous_own_entries(api, client, other_tenant):
    create_levels(api, REFERENCE_LEVELS[:1])
    entry = history(api)[0]["id"]
    other = Api(client, other_tenant)
    create_levels(other, REFERENCE_LEVELS[:2])
    r = other.post(f"/engagement-levels/history/{entry}/revert")
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
    assert len(table(other)) == 2 and [e["id"] for e in history(other)] != [entry]
    assert entry not in {e["id"] for e in history(other)}
    assert api.post("/engagement-levels/history/no-such-entry/revert").status_code == 404


def test_a_wiped_table_is_not_restored_as_no_levels(client, tenant, api):
    member = member_client(client, tenant)
    assert client.post("/admin/seed", headers=member).status_code == 201
    assert client.post("/admin/wipe-seed", headers=member).status_code == 200
    wiped, seeded = history(api)[:2]
    assert (wiped["action"], wiped["levels"], wiped["who"]["kind"]) == ("wipe-seed", [], "member")
    assert (seeded["action"], seeded["who"]["name"]) == ("seed", tenant.email)
    r = api.post(f"/engagement-levels/history/{wiped['id']}/revert")
    assert r.status_code == 400 and "entry_id" in r.json["error"]["details"]
    assert api.post(f"/engagement-levels/history/{seeded['id']}/revert").status_code == 200
    assert [name for name, *_ in table(api)] == ["Cold", "Warm", "Hot", "Very Hot"]


@pytest.fixture
def integrated(settings, clean, tenant, monkeypatch, run_worker):
    """The reference levels and rules, HubSpot connected, Slack alerting a channel on entries into Hot."""
    with FakeHubSpot(tokens=[HS_TOKEN]) as hubspot, FakeSlack(bot_token=BOT) as slack:
        monkeypatch.setenv("HUBSPOT_API_BASE", hubspot.url)
        monkeypatch.setenv("SLACK_API_BASE", slack.base_url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", BOT)
        app = create_app(
            dataclasses.replace(
                settings, hubspot_api_base=hubspot.url, slack_api_base=slack.base_url, slack_bot_token=BOT
            )
        )
        app.testing = True
        api = Api(app.test_client(), tenant)
        member = app.test_client()
        headers = member_client(member, tenant)
        ids = create_levels(api)
        published_ruleset(api, WEIGHTS)
        assert api.put("/integrations/hubspot", json={"access_token": HS_TOKEN}).status_code == 200
        channel = slack.add_channel("sales")
        target = {"kind": "channel", "id": channel}
        assert member.put("/integrations/slack/target", json=target, headers=headers).status_code == 200
        run_worker()
        yield app, api, ids, hubspot, slack


def sync_hubspot(app, settings, redis_conn, run_worker) -> None:
    """What the sweep does every few seconds: the OU's changed leads to HubSpot."""
    state = app.extensions["leadpulse"]
    sweep_once(state.Session, redis_conn, settings.queue_name, settings.scoring_parallelism, settings)
    run_worker()


def test_revert_moves_hubspot_options_and_contacts_along(integrated, run_worker, settings, redis_conn):
    app, api, ids, hubspot, _ = integrated
    reference = history(api)[0]
    hubspot.add_contact("top@x.io")
    for _ in range(4):  # 120
        body = {"aliases": [{"alias_kind": "email", "raw_value": "top@x.io"}], "event_type": "demo_request"}
        assert api.post("/ingest", json=body).status_code == 202
    settle(app, run_worker)

    def options():
        return [o["value"] for o in hubspot.properties["engagement_level"]["options"]]

    def level_in_hubspot():
        return hubspot.contact_by_email("top@x.io")["properties"].get("engagement_level")

    assert level_in_hubspot() == "Very Hot"
    assert api.put(f"/engagement-levels/{ids['Very Hot']}", json={"max_score": 99}).status_code == 200
    assert api.post("/engagement-levels", json={"name": "Scorching", "min_score": 100}).status_code == 201
    run_worker()
    sync_hubspot(app, settings, redis_conn, run_worker)
    assert options() == ["Cold", "Warm", "Hot", "Very Hot", "Scorching"] and level_in_hubspot() == "Scorching"

    assert api.post(f"/engagement-levels/history/{reference['id']}/revert").status_code == 200
    run_worker()  # the options job the revert enqueued
    assert options() == ["Cold", "Warm", "Hot", "Very Hot"]
    sync_hubspot(app, settings, redis_conn, run_worker)
    assert level_in_hubspot() == "Very Hot"


def test_revert_sends_one_digest_not_one_alert_per_lead(integrated, run_worker):
    app, api, ids, _, slack = integrated
    for lead in ("d1", "d2", "d3"):
        for event_type in ("demo_request", "page_view", "page_view"):  # 40: Warm
            ingest(api, lead, event_type)
    settle(app, run_worker)
    reference = history(api)[0]
    assert api.put(f"/engagement-levels/{ids['Warm']}", json={"max_score": 34}).status_code == 200
    assert api.put(f"/engagement-levels/{ids['Hot']}", json={"min_score": 35}).status_code == 200
    hot_from_35 = history(api)[0]
    run_worker()
    assert [m["text"] for m in slack.messages] == ["3 leads entered Hot after the level change"]
    assert api.post(f"/engagement-levels/history/{reference['id']}/revert").status_code == 200
    run_worker()
    assert len(slack.messages) == 1  # falling back to Warm alerts nobody
    assert api.post(f"/engagement-levels/history/{hot_from_35['id']}/revert").status_code == 200
    run_worker()
    assert [m["text"] for m in slack.messages] == ["3 leads entered Hot after the level change"] * 2
    assert set(levels_of(api).values()) == {"Hot"}


def test_publishing_and_unpublishing_are_in_the_ruleset_history(api, client, tenant, app):
    rs = published_ruleset(api, {"page_view": 5, "demo_request": 30})
    member = member_client(client, tenant)
    rule = api.get(f"/rulesets/{rs}/rules").json[0]
    assert api.put(f"/rules/{rule['rule_id']}", json={"weight": 7}).status_code == 200
    assert client.post(f"/rulesets/{rs}/publish", headers=member).status_code == 200
    assert client.post(f"/rulesets/{rs}/unpublish", headers=member).status_code == 200
    assert client.post(f"/rulesets/{rs}/unpublish", headers=member).status_code == 200  # a draft already: nothing
    draft = api.post("/rulesets", json={"name": "Other"}).json["ruleset_id"]
    assert api.post(f"/rulesets/{draft}/publish").status_code == 200

    r = api.get("/rulesets/history")
    assert r.status_code == 200, r.json
    entries = r.json
    assert [(e["action"], e["ruleset_id"]) for e in entries] == [
        ("publish", draft),
        ("unpublish", rs),
        ("publish", rs),
        ("publish", rs),
    ]
    me = client.get("/me", headers=member).json["org_member_id"]
    assert entries[1]["who"] == {"kind": "member", "id": me, "name": tenant.email}
    assert entries[3]["who"]["kind"] == "credential"
    weights = [{r["event_type"]: r["weight"] for r in e["rules"]} for e in entries[1:]]
    assert weights == [{"page_view": 7, "demo_request": 30}] * 2 + [{"page_view": 5, "demo_request": 30}]
    assert set(entries[3]["rules"][0]) == {"id", "event_type", "weight", "active", "start_at", "end_at"}
    assert entries[0]["ruleset_name"] == "Other" and entries[0]["rules"] == []

    one = api.get("/rulesets/history", query_string={"ruleset_id": rs, "limit": 2}).json
    assert one["total"] == 3 and [e["action"] for e in one["history"]] == ["unpublish", "publish"]
    assert api.delete(f"/rulesets/{rs}").status_code == 204  # its history stays
    assert len(api.get("/rulesets/history", query_string={"ruleset_id": rs}).json) == 3
    assert api.get("/rulesets/history", query_string={"ruleset_id": "no-such"}).status_code == 404


def test_another_ous_ruleset_history_is_a_404(api, client, other_tenant):
    rs = published_ruleset(api, {"page_view": 5})
    other = Api(client, other_tenant)
    assert other.get("/rulesets/history", query_string={"ruleset_id": rs}).status_code == 404
    assert other.get("/rulesets/history").json == []
