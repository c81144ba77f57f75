"""Why a lead has its score: GET /lead/{id}/score-explain and GET /event/{id}/score on a worked example with the
floor hit and a late event, the drivers Slack and HubSpot are given, another OU's ids and bad input."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from models.base import utcnow
from models.engine import DECAY
from models.events import SCORED, Event, ScoreDelta
from models.explain import Driver, driver_text, event_score, ledgers, why
from models.leads import Lead
from models.scoring import DecayRule, LeadScore
from tests.conftest import Api, make_tenant
from tests.helpers import ingest, published_ruleset, settle
from worker.jobs import decay_pass

WEIGHTS = {"page_view": 5, "demo_request": 30, "unsubscribe": -20}


def at(hours_ago: float) -> str:
    return (utcnow() - timedelta(hours=hours_ago)).isoformat()


def parts_of(ledger: dict) -> dict:
    """{event_type or kind: (count, points)} of one ruleset's ledger."""
    return {p["event_type"] if p["kind"] != "floor" else "floor": (p["count"], p["points"]) for p in ledger["parts"]}


def worked_example(api, run_worker) -> dict[str, str]:
    """ada: page_view, unsubscribe (floored), demo_request, page_view, one of them three days old; returns event ids."""
    primary = published_ruleset(api, WEIGHTS)
    sales = published_ruleset(api, {"demo_request": 100, "unsubscribe": -1000}, name="Sales", primary=False)
    ids = {
        "old_view": ingest(api, "ada", "page_view", timestamp=at(72))["id"],
        "unsub": ingest(api, "ada", "unsubscribe", timestamp=at(5))["id"],
        "demo": ingest(api, "ada", "demo_request", timestamp=at(4))["id"],
        "view": ingest(api, "ada", "page_view", timestamp=at(3))["id"],
    }
    run_worker()
    return {"primary": primary, "sales": sales, **ids}


def test_the_ledger_sums_to_the_score_with_the_floor_and_after_a_late_event(api, run_worker):
    ids = worked_example(api, run_worker)
    # 0 +5 = 5; -20 floors at 0 (the floor gives back 15); +30 = 30; +5 = 35.
    r = api.get("/lead/ada/score-explain")
    assert r.status_code == 200, r.json
    body = r.json
    assert body["score"] == 35 and body["ruleset_id"] == ids["primary"] and body["range_hours"] == 24
    primary, sales = body["ledger"]
    assert (primary["ruleset_id"], primary["is_primary"], primary["score"]) == (ids["primary"], True, 35)
    assert parts_of(primary) == {
        "demo_request": (1, 30),
        "page_view": (2, 10),
        "unsubscribe": (1, -20),
        "floor": (1, 15),
    }
    assert sum(p["points"] for p in primary["parts"]) == primary["score"]
    assert {p["event_type"]: p["weight"] for p in primary["parts"] if p["kind"] == "rule"} == WEIGHTS
    # Sales: the unsubscribe floors at 0 from 0 (the floor gives back all 1000), then +100.
    assert (sales["name"], sales["is_primary"], sales["score"]) == ("Sales", False, 100)
    assert parts_of(sales) == {"demo_request": (1, 100), "unsubscribe": (1, -1000), "floor": (1, 1000)}

    # A page view from before the unsubscribe arrives late: the lead is replayed, 5 +5 = 10, -20 floors (10 back).
    ingest(api, "ada", "page_view", timestamp=at(6))
    run_worker()
    primary = api.get("/lead/ada/score-explain").json["ledger"][0]
    assert primary["score"] == 35
    assert parts_of(primary) == {
        "demo_request": (1, 30),
        "page_view": (3, 15),
        "unsubscribe": (1, -20),
        "floor": (1, 10),
    }
    assert sum(p["points"] for p in primary["parts"]) == 35

    # The unsubscribe as replayed: 10 -> 0, the rule meant -20, the floor changed it by +10.
    r = api.get(f"/event/{ids['unsub']}/score")
    assert r.status_code == 200, r.json
    event = r.json
    assert (event["event_id"], event["lead_id"], event["event_type"], event["status"]) == (
        ids["unsub"],
        "ada",
        "unsubscribe",
        "scored",
    )
    assert [(s["ruleset_id"], s["delta"], s["points"], s["floor_adjustment"]) for s in event["rulesets"]] == [
        (ids["primary"], -10, -20, 10),
        (ids["sales"], 0, -1000, 1000),
    ]
    assert [(s["score_before"], s["score_after"]) for s in event["rulesets"]] == [(10, 0), (0, 0)]
    demo = api.get(f"/event/{ids['demo']}/score").json["rulesets"]
    assert [(s["name"], s["score_before"], s["score_after"], s["delta"]) for s in demo] == [
        ("Engagement", 0, 30, 30),
        ("Sales", 0, 100, 100),
    ]


def test_top_drivers_count_the_window_and_carry_the_snapshot(api, run_worker):
    ids = worked_example(api, run_worker)
    body = api.get("/lead/ada/score-explain").json  # the last 24 hours: the three-day-old page view is not in it
    assert [(d["event_type"], d["points"], d["count"]) for d in body["top_drivers"]] == [
        ("demo_request", 30, 1),
        ("page_view", 5, 1),
        ("unsubscribe", -20, 1),
    ]
    assert all(d["rule_id"] for d in body["top_drivers"])
    assert (body["decay_applied"], body["surge_boost"], body["surge_total"], body["surge_event_count"]) == (0, [], 0, 0)
    longer = api.get("/lead/ada/score-explain", query_string={"hours": 96}).json
    assert longer["range_hours"] == 96
    assert [(d["event_type"], d["points"], d["count"]) for d in longer["top_drivers"]][:2] == [
        ("demo_request", 30, 1),
        ("page_view", 10, 2),
    ]
    # The snapshot is the published weights now: an unpublished edit does not show, nor change the ledger.
    rule = next(r for r in api.get(f"/rulesets/{ids['primary']}/rules").json if r["event_type"] == "page_view")
    assert api.put(f"/rules/{rule['rule_id']}", json={"weight": 50}).status_code == 200
    body = api.get("/lead/ada/score-explain").json
    snap = {(s["ruleset_id"], s["event_type"]): s["weight"] for s in body["snapshot"]}
    assert snap[(ids["primary"], "page_view")] == 5 and snap[(ids["sales"], "demo_request")] == 100
    assert body["snapshot"][0]["ruleset_id"] == ids["primary"]  # primary first
    assert sum(p["points"] for p in body["ledger"][0]["parts"]) == body["ledger"][0]["score"] == 35
    # Republished, everything is rescored with 50 and the explanation follows.
    api.post(f"/rulesets/{ids['primary']}/publish")
    body = api.get("/lead/ada/score-explain").json
    assert body["score"] == 50 - 20 + 30 + 50 and parts_of(body["ledger"][0])["page_view"] == (2, 100)


def test_slack_and_hubspot_get_the_explanation_s_drivers(api, app, run_worker):
    worked_example(api, run_worker)
    with app.extensions["leadpulse"].Session() as s:
        lead = s.execute(select(Lead).where(Lead.lead_id == "ada")).scalar_one()
        # The same drivers as the explanation over 30 days, as text: what Slack's "why" and HubSpot carry.
        assert why(s, lead.unit_id, [lead.pk]) == {lead.pk: "demo_request +30, page_view +10, unsubscribe -20"}
        assert why(s, lead.unit_id, []) == {}
    assert driver_text([Driver("a", "r1", 9, 1), Driver("b", "r2", 0, 3), Driver("c", "r3", -1, 1)]) == "a +9, c -1"


def test_an_explanation_without_rulesets_or_events(api):
    ingest(api, "bob", "page_view")
    body = api.get("/lead/bob/score-explain").json
    assert (body["score"], body["ruleset_id"], body["top_drivers"], body["snapshot"], body["ledger"]) == (
        0,
        None,
        [],
        [],
        [],
    )
    api.post("/rulesets", json={"name": "Draft", "is_primary": True})  # a draft scores nothing
    ledger = api.get("/lead/bob/score-explain").json["ledger"]
    assert [(lg["status"], lg["score"], lg["parts"]) for lg in ledger] == [
        ("draft", 0, [{"kind": "floor", "points": 0, "count": 0, "rule_id": None, "event_type": None, "weight": None}])
    ]
    event = api.get("/events/bob").json[0]
    assert api.get(f"/event/{event['id']}/score").json["rulesets"] == []


def test_decay_events_are_explained_as_the_contract_stores_them(api, app, run_worker):
    """A DECAY event (metadata.decrease, its delta's rule_id the decay rule) as the decay pass stores it: a ledger line
    of its own, what the floor kept, decay_applied and the event's score."""
    ids = worked_example(api, run_worker)
    with app.extensions["leadpulse"].Session() as s, s.begin():
        lead = s.execute(select(Lead).where(Lead.lead_id == "ada")).scalar_one()
        decays = []
        for n, (decrease, before) in enumerate([(20, 35), (20, 15)]):  # the second floors: 15 -> 0
            event = Event(
                org_id=lead.org_id,
                unit_id=lead.unit_id,
                lead_pk=lead.pk,
                event_type=DECAY,
                occurred_at=datetime.now(UTC) - timedelta(hours=2 - n),
                metadata_={"channel": "system", "decay_id": "decay-1", "period": n + 1, "decrease": decrease},
                status=SCORED,
            )
            s.add(event)
            s.flush()
            after = max(0, before - decrease)
            s.add(
                ScoreDelta(
                    event_id=event.id,
                    ruleset_id=ids["primary"],
                    lead_pk=lead.pk,
                    rule_id="decay-1",
                    delta=after - before,
                    score_after=after,
                )
            )
            decays.append(event.id)
        s.execute(
            LeadScore.__table__.update()
            .where(LeadScore.lead_pk == lead.pk, LeadScore.ruleset_id == ids["primary"])
            .values(score=0)
        )
        lead.score = 0
    body = api.get("/lead/ada/score-explain").json
    assert body["score"] == 0 and body["decay_applied"] == -40
    assert ("DECAY", "decay-1", -40, 2) in [
        (d["event_type"], d["rule_id"], d["points"], d["count"]) for d in body["top_drivers"]
    ]
    primary = body["ledger"][0]
    assert [p for p in primary["parts"] if p["kind"] == "decay"] == [
        {"kind": "decay", "points": -40, "count": 2, "rule_id": "decay-1", "event_type": DECAY, "weight": None}
    ]
    assert parts_of(primary)["floor"] == (2, 15 + 5)  # the unsubscribe's 15 and the second decay's 5
    assert sum(p["points"] for p in primary["parts"]) == 0
    event = api.get(f"/event/{decays[1]}/score").json
    assert [
        (s["rule_id"], s["points"], s["delta"], s["floor_adjustment"], s["score_before"], s["score_after"])
        for s in event["rulesets"]
    ] == [("decay-1", -20, -15, 5, 15, 0)]
    with app.extensions["leadpulse"].Session() as s:
        lead = s.execute(select(Lead).where(Lead.lead_id == "ada")).scalar_one()
        assert event_score(s, lead.unit_id, decays[0]).rulesets[0].score_after == 15
        assert ledgers(s, lead.unit_id, [lead.pk])[lead.pk][0].total == 0


def test_another_ou_s_lead_and_event_are_404_and_bad_hours_400(api, client, settings, run_worker):
    ids = worked_example(api, run_worker)
    other = Api(client, make_tenant(settings, org="Globex", unit="East"))
    ingest(other, "ada", "page_view")  # a lead of the same id in the other OU
    r = other.get(f"/event/{ids['demo']}/score")
    assert r.status_code == 404 and r.json["error"]["code"] == "not_found"
    mine = other.get("/events/ada").json[0]["id"]
    assert api.get(f"/event/{mine}/score").status_code == 404
    assert other.get("/lead/ada/score-explain").json["ledger"] == []  # its own ada, nothing of the first OU
    assert other.get("/lead/nobody/score-explain").status_code == 404
    for bad in ("abc", "-1", "99999999999999999999", "1.5"):
        assert api.get(f"/event/{bad}/score").status_code == 404, bad
    for hours in ("0", "-3", "abc", "1.5", str(24 * 366 + 1), ""):
        r = api.get("/lead/ada/score-explain", query_string={"hours": hours})
        assert r.status_code == 400 and "hours" in r.json["error"]["details"], (hours, r.json)


def test_a_paused_ruleset_forgets_a_deleted_event_and_still_adds_up(api, app, run_worker):
    """Paused, a ruleset keeps what it scored, but not an event that is deleted: its score is rebuilt without it."""
    rs = published_ruleset(api, {"view": 5, "unsub": -20})
    ingest(api, "a", "view", timestamp=at(3))
    unsub = ingest(api, "a", "unsub", timestamp=at(2))["id"]
    ingest(api, "a", "view", timestamp=at(1))
    settle(app, run_worker)
    assert api.get("/lead/a/score-explain").json["score"] == 5  # 5, floored to 0, 5
    assert api.put(f"/rulesets/{rs}", json={"active": False}).status_code == 200
    ingest(api, "a", "view")  # paused: not scored
    assert api.delete("/events/batch", json={"ids": [unsub]}).json["deleted"] == 1
    settle(app, run_worker)
    ledger = api.get("/lead/a/score-explain").json["ledger"][0]
    assert ledger["score"] == 10 and parts_of(ledger) == {"view": (2, 10), "floor": (0, 0)}
    assert api.get("/leads").json[0]["score"] == 10


def test_a_decay_pass_is_explained_in_the_ledger_and_per_event(api, app, run_worker):
    """Real DECAY events from a decay pass at a simulated moment: a ledger part of their own, what the floor kept,
    decay_applied in the window, and each one's before and after."""
    published_ruleset(api, {"view": 5})
    now = utcnow().replace(microsecond=0)
    ingest(api, "a", "view", timestamp=(now - timedelta(days=3, hours=1)).isoformat())
    settle(app, run_worker)
    decay_id = api.post("/decays", json={"inactive_for": 1, "unit": "days", "decrease": 2}).json["decay_id"]
    with app.extensions["leadpulse"].Session() as s, s.begin():  # as if the rule had been there before the event
        s.execute(update(DecayRule).where(DecayRule.id == decay_id).values(applies_from=now - timedelta(days=5)))
    state = app.extensions["leadpulse"]
    assert decay_pass(state.settings, state.redis, None, now=now).events == 3  # three whole days without activity
    settle(app, run_worker)
    body = api.get("/lead/a/score-explain", query_string={"hours": 96}).json
    assert body["score"] == 0 and body["decay_applied"] == -6  # 5 -> 3 -> 1 -> 0: the floor keeps 1 of the last 2
    assert parts_of(body["ledger"][0]) == {"view": (1, 5), DECAY: (3, -6), "floor": (1, 1)}
    assert [p["rule_id"] for p in body["ledger"][0]["parts"] if p["kind"] == "decay"] == [decay_id]
    decays = api.get("/events", query_string={"event_type": DECAY}).json
    scores = [
        api.get(f"/event/{e['id']}/score").json["rulesets"][0] for e in sorted(decays, key=lambda e: e["timestamp"])
    ]
    assert [(s["score_before"], s["delta"], s["points"], s["floor_adjustment"], s["rule_id"]) for s in scores] == [
        (5, -2, -2, 0, decay_id),
        (3, -2, -2, 0, decay_id),
        (1, -1, -2, 1, decay_id),
    ]
