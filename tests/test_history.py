"""Score history, gains, top leads and event statistics on a worked example whose numbers are known by construction;
bad parameters and another OU's ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from models.base import utcnow
from models.events import SCORED, Event, ScoreDelta
from models.leads import Lead
from models.scoring import LeadScore
from tests.conftest import Api
from tests.helpers import published_ruleset
from webapp.schema_base import rfc3339

WEIGHTS = {"page_view": 5, "demo_request": 30, "unsubscribe": -20}


def hour(now: datetime, hours_ago: int, minute: int) -> datetime:
    """A time inside the hour that began `hours_ago` hours before now's: far enough from every window's edge that the
    seconds between the test's clock and the server's never move an event across one."""
    return now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_ago) + timedelta(minutes=minute)


@pytest.fixture
def world(api, run_worker):
    """ada: 5 long ago, +10 two days ago, +30 -20 three hours ago (25); bob: +30 two hours ago; cy: +15 thirty hours
    ago, then a DECAY of -10 an hour ago (5); dee: +5 thirty hours ago."""
    published_ruleset(api, WEIGHTS)
    now = datetime.now(UTC)
    plan = [
        ("ada", "page_view", now - timedelta(days=95)),
        ("ada", "page_view", hour(now, 40, 10)),
        ("ada", "page_view", hour(now, 40, 20)),
        ("ada", "demo_request", hour(now, 3, 5)),
        ("ada", "unsubscribe", hour(now, 3, 40)),
        ("bob", "demo_request", hour(now, 2, 30)),
        ("cy", "page_view", hour(now, 30, 1)),
        ("cy", "page_view", hour(now, 30, 2)),
        ("cy", "page_view", hour(now, 30, 3)),
        ("dee", "page_view", hour(now, 30, 4)),
    ]
    for lead, event_type, at in plan:
        r = api.post("/ingest", json={"lead_id": lead, "event_type": event_type, "timestamp": rfc3339(at)})
        assert r.status_code == 202, r.json
    run_worker()
    store_decay(api, "cy", hour(now, 1, 1), 10)
    return now


def store_decay(api, lead_id: str, at: datetime, decrease: int) -> None:
    """What the decay job stores for one application (docs/history.md): a scored DECAY event of the system's, its
    delta on the primary ruleset, the lead's lower score."""
    with api.client.application.extensions["leadpulse"].Session() as s, s.begin():
        lead = s.execute(select(Lead).where(Lead.lead_id == lead_id)).scalar_one()
        kept = s.execute(select(LeadScore).where(LeadScore.lead_pk == lead.pk)).scalar_one()
        event = Event(
            org_id=lead.org_id,
            unit_id=lead.unit_id,
            lead_pk=lead.pk,
            event_type="DECAY",
            occurred_at=at,
            metadata_={"channel": "system"},
            status=SCORED,
            scored_at=utcnow(),
        )
        s.add(event)
        s.flush()
        kept.score = lead.score = kept.score - decrease
        s.add(
            ScoreDelta(
                event_id=event.id, ruleset_id=kept.ruleset_id, lead_pk=lead.pk, delta=-decrease, score_after=kept.score
            )
        )


def test_a_leads_hourly_history(api, world):
    now = world
    r = api.get("/lead/ada/score-history", query_string={"days": 90})
    assert r.status_code == 200, r.json
    body = r.json
    assert body["lead_id"] == "ada" and body["days"] == 90 and body["resolution"] == "hour"
    assert body["start_score"] == 5  # the page view 95 days ago, before the window
    assert body["points"] == [
        {"hour": rfc3339(hour(now, 40, 0)), "score": 15, "change": 10, "events": 2},
        {"hour": rfc3339(hour(now, 3, 0)), "score": 25, "change": 10, "events": 2},
    ]
    window = {rfc3339(t.replace(minute=0, second=0, microsecond=0) - timedelta(days=90)) for t in (now, utcnow())}
    assert body["start"] in window  # its hour 90 days back (the clock may have crossed an hour since `now`)
    one_day = api.get("/leads/ada/score-history", query_string={"days": 1}).json
    assert one_day["start_score"] == 15 and [p["score"] for p in one_day["points"]] == [25]
    default = api.get("/lead/ada/score-history").json  # 30 days
    assert default["days"] == 30 and default["start_score"] == 5 and len(default["points"]) == 2
    assert api.get("/score/ada").json["score"] == default["points"][-1]["score"]


def test_decay_is_a_change_in_history_and_gains(api, world):
    now = world
    cy = api.get("/lead/cy/score-history", query_string={"days": 2}).json
    assert cy["points"] == [
        {"hour": rfc3339(hour(now, 30, 0)), "score": 15, "change": 15, "events": 3},
        {"hour": rfc3339(hour(now, 1, 0)), "score": 5, "change": -10, "events": 1},
    ]
    week = api.get("/score-gains", query_string={"range": "last_7d", "limit": 10}).json
    assert {g["lead_id"]: g["gain"] for g in week}["cy"] == 5  # 15 up, 10 decayed


def test_score_gains_rank_by_net_rise(api, world):
    week = api.get("/score-gains", query_string={"range": "last_7d"}).json
    assert [(g["lead_id"], g["gain"], g["changes"], g["score"]) for g in week] == [
        ("bob", 30, 1, 30),
        ("ada", 20, 4, 25),
        ("cy", 5, 4, 5),
        ("dee", 5, 1, 5),
    ]
    assert week[0]["level"] is None  # the OU has no levels
    day = api.get("/score-gains", query_string={"range": "last_24h", "limit": 5}).json
    assert [(g["lead_id"], g["gain"]) for g in day] == [("bob", 30), ("ada", 10)]  # cy fell 10: no gain
    assert [g["lead_id"] for g in api.get("/score-gains?limit=2").json] == ["bob", "ada"]  # last_7d by default


def test_top_leads(api, world):
    r = api.get("/top-leads")
    assert r.status_code == 200
    assert [(t["lead_id"], t["score"]) for t in r.json] == [("bob", 30), ("ada", 25), ("cy", 5), ("dee", 5)]
    assert r.json[0]["level"] is None and r.json[0]["last_event_at"].endswith("Z")
    assert [t["lead_id"] for t in api.get("/top-leads?limit=1").json] == ["bob"]


def test_event_stats_leave_decay_out(api, world):
    r = api.get("/event-stats")
    assert r.status_code == 200, r.json
    assert r.json == {
        "last_24h": {
            "events": 3,
            "leads": 2,
            "event_types": 2,
            "scored": 3,
            "suppressed": 0,
            "pending": 0,
            "points": 40,
        },
        "top_events": [
            {"event_type": "demo_request", "events": 2, "leads": 2, "points": 60},
            {"event_type": "unsubscribe", "events": 1, "leads": 1, "points": -20},
        ],
    }


def test_events_analytics(api, world):
    r = api.get("/events-analytics", query_string={"range": "last_7d"})
    assert r.status_code == 200, r.json
    body = r.json
    assert body["range"] == "last_7d" and body["end"] is None
    assert body["totals"] == {
        "events": 9,
        "leads": 4,
        "event_types": 3,
        "scored": 9,
        "suppressed": 0,
        "pending": 0,
        "points": 70,
    }
    assert body["by_type"] == {
        "page_view": {"event_type": "page_view", "events": 6, "leads": 3, "points": 30},
        "demo_request": {"event_type": "demo_request", "events": 2, "leads": 2, "points": 60},
        "unsubscribe": {"event_type": "unsubscribe", "events": 1, "leads": 1, "points": -20},
    }
    everything = api.get("/events-analytics?range=last_90d").json["totals"]
    assert everything["events"] == 9  # the page view 95 days ago is past the history kept
    assert api.get("/events-analytics").json["range"] == "last_30d"


def test_an_ou_without_a_primary_ruleset(api, run_worker):
    r = api.post("/ingest", json={"lead_id": "ada", "event_type": "page_view"})
    assert r.status_code == 202
    run_worker()
    history = api.get("/lead/ada/score-history").json
    assert (history["ruleset_id"], history["start_score"], history["points"]) == ("", 0, [])
    assert api.get("/score-gains").json == []
    assert api.get("/event-stats").json["last_24h"]["events"] == 1
    assert api.get("/event-stats").json["last_24h"]["points"] == 0


def test_history_of_another_ruleset(api, run_worker):
    published_ruleset(api, {"page_view": 5})
    other = published_ruleset(api, {"page_view": 7}, name="Experimental", primary=False)
    assert api.post("/ingest", json={"lead_id": "ada", "event_type": "page_view"}).status_code == 202
    run_worker()
    own = api.get("/lead/ada/score-history", query_string={"ruleset_id": other}).json
    assert own["ruleset_id"] == other and [p["score"] for p in own["points"]] == [7]
    assert [p["score"] for p in api.get("/lead/ada/score-history").json["points"]] == [5]


@pytest.mark.parametrize(
    "path, query, field",
    [
        ("/lead/ada/score-history", {"days": 0}, "days"),
        ("/lead/ada/score-history", {"days": 91}, "days"),
        ("/lead/ada/score-history", {"days": "week"}, "days"),
        ("/lead/ada/score-history", {"days": 30, "ruleset_id": ""}, "ruleset_id"),
        ("/score-gains", {"range": "all"}, "range"),
        ("/score-gains", {"range": "custom"}, "range"),
        ("/score-gains", {"limit": 0}, "limit"),
        ("/score-gains", {"limit": 101}, "limit"),
        ("/top-leads", {"limit": -1}, "limit"),
        ("/top-leads", {"limit": 1000}, "limit"),
        ("/events-analytics", {"range": "last_year"}, "range"),
        ("/rulesets/history", {"ruleset_id": ""}, "ruleset_id"),
        ("/engagement-levels/history", {"limit": 501}, "limit"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(api, path, query, field):
    assert api.post("/leads", json={"id": "ada"}).status_code == 201
    r = api.get(path, query_string=query)
    assert r.status_code == 400, r.json
    assert field in r.json["error"]["details"], r.json


def test_another_ous_lead_and_ruleset_are_404_and_its_numbers_never_show(api, client, other_tenant, world):
    other = Api(client, other_tenant)
    rulesets = api.get("/rulesets").json
    assert other.get("/lead/ada/score-history").status_code == 404
    r = api.get("/lead/ada/score-history", query_string={"ruleset_id": "no-such-ruleset"})
    assert r.status_code == 404
    r = other.get("/lead/ada/score-history", query_string={"ruleset_id": rulesets[0]["ruleset_id"]})
    assert r.status_code == 404
    assert other.get("/score-gains").json == [] and other.get("/top-leads").json == []
    assert other.get("/event-stats").json["last_24h"]["events"] == 0
    assert other.get("/events-analytics").json["by_type"] == {}
