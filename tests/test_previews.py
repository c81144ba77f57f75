"""Rescore previews and backtests (docs/previews.md): a preview's numbers are what publishing then does and nothing is
written; a backtest on a history whose answer is worked out by hand, alerts and their cooldown included."""

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text

from models.event_queries import stream_in_lead_order
from models.events import Event
from models.levels import LeadLevelChange
from models.scoring import LeadScore
from tests.conftest import Api, make_tenant, model_tables
from tests.helpers import create_levels, ingest, leads_by_id, published_ruleset
from tests.test_hubspot_webhooks import deliver, hooked  # noqa: F401  (the fixture)

T0 = datetime(2025, 6, 1, tzinfo=UTC)
EDITS = [
    {"event_type": "demo", "weight": 20},
    {"event_type": "view", "weight": 15},
    {"event_type": "unsub", "weight": -40},
]


def at(days: float = 0, hours: float = 0) -> str:
    return (T0 + timedelta(days=days, hours=hours)).isoformat().replace("+00:00", "Z")


def story(api, lead_id: str, *steps) -> None:
    """Events of one lead, each (event_type, days[, hours]) after T0."""
    for event_type, *when in steps:
        ingest(api, lead_id, event_type, timestamp=at(*when))


def table_counts(app) -> dict[str, int]:
    with app.extensions["leadpulse"].Session() as s:
        return {
            t.name: s.execute(select(func.count()).select_from(t)).scalar()
            for t in model_tables()
            if t.name != "audit_logs"  # the call itself is audited, like every POST
        }


def lead_states(api) -> dict[str, tuple[int, str | None]]:
    return {k: (v["score"], (v["level"] or {}).get("name")) for k, v in leads_by_id(api).items()}


def level_counts(states: dict) -> Counter:
    return Counter(level or "Unclassified" for _, level in states.values())


def rules_of(api, ruleset_id: str) -> dict[str, dict]:
    return {r["event_type"]: r for r in api.get(f"/rulesets/{ruleset_id}/rules").json}


def check_preview_came_true(preview: dict, before: dict, after: dict) -> None:
    """Every number of the preview against the leads before and after the change it previewed."""
    changed = {k for k in after if after[k][0] != before[k][0]}
    assert preview["score_changes"] == len(changed) and preview["leads"] == len(after)
    moves = [
        (before[k][1] or "Unclassified", after[k][1] or "Unclassified") for k in after if before[k][1] != after[k][1]
    ]
    assert preview["level_changes"] == len(moves)
    rows = {row["level"]: row for row in preview["levels"]}
    assert {name: row["after"] for name, row in rows.items() if row["after"]} == dict(level_counts(after))
    assert {name: row["before"] for name, row in rows.items() if row["before"]} == dict(level_counts(before))
    assert {name: row["moved_out"] for name, row in rows.items() if row["moved_out"]} == dict(
        Counter(m[0] for m in moves)
    )
    assert {name: row["moved_in"] for name, row in rows.items() if row["moved_in"]} == dict(
        Counter(m[1] for m in moves)
    )
    movers = sorted(changed, key=lambda k: (-abs(after[k][0] - before[k][0]), k))[:20]
    assert [m["lead_id"] for m in preview["top_movers"]] == movers
    for m in preview["top_movers"]:
        assert (m["before"]["score"], m["before"]["level"]) == before[m["lead_id"]]
        assert (m["after"]["score"], m["after"]["level"]) == after[m["lead_id"]]
        assert m["change"] == m["after"]["score"] - m["before"]["score"]


def test_a_preview_with_edits_is_what_publishing_them_then_does_and_writes_nothing(app, api, run_worker):
    create_levels(api)
    rs = published_ruleset(api, {"demo": 30, "view": 5, "unsub": -20})
    story(api, "a", ("demo", 0), ("demo", 1))  # 60 Hot -> 40 Warm
    story(api, "b", ("view", 0), ("view", 1), ("view", 2), ("view", 3))  # 20 Cold -> 60 Hot
    story(api, "c", ("unsub", 0), ("demo", 1))  # 0 (floor), 30 Warm -> 0, 20 Cold
    story(api, "d", ("demo", 0), ("unsub", 1), ("unsub", 2), ("view", 3))  # 30, 10, 0 (floor), 5 -> 20, 0, 0, 15
    story(api, "e", ("demo", 0), ("demo", 1), ("demo", 2))  # 90 Very Hot -> 60 Hot
    story(api, "f", ("other", 0))  # no rule: 0 either way
    story(api, "h", ("view", 0), ("demo", 1), ("demo", 2), ("demo", 3))  # 95 -> 75, Very Hot either way
    assert api.post("/leads", json={"id": "g"}).status_code == 201  # no events at all
    run_worker()
    before = lead_states(api)
    assert before["c"] == (30, "Warm") and before["d"] == (5, "Cold") and before["g"] == (0, "Cold")
    counts = table_counts(app)

    r = api.post(f"/rulesets/{rs}/rescore-preview", json={"rules": EDITS})
    assert r.status_code == 200, r.json
    preview = r.json
    assert table_counts(app) == counts and lead_states(api) == before  # nothing written
    assert preview["as_primary"] is True and preview["ruleset_id"] == rs
    assert (preview["leads"], preview["rescored_leads"], preview["score_changes"], preview["level_changes"]) == (
        8,
        6,
        6,
        4,
    )
    assert [m["lead_id"] for m in preview["top_movers"]] == ["b", "e", "a", "h", "c", "d"]
    assert preview["levels"][-1] == {
        "level_id": None,
        "level": "Unclassified",
        "before": 0,
        "after": 0,
        "moved_in": 0,
        "moved_out": 0,
    }
    # the stored rules are untouched: the same preview without edits changes nothing
    same = api.post(f"/rulesets/{rs}/rescore-preview").json
    assert (same["score_changes"], same["level_changes"], same["top_movers"]) == (0, 0, [])

    for edit in EDITS:  # now make the edits for real and publish
        rule = rules_of(api, rs)[edit["event_type"]]
        assert api.put(f"/rules/{rule['rule_id']}", json={"weight": edit["weight"]}).status_code == 200
    with app.extensions["leadpulse"].Session() as s:
        moves_before = s.execute(select(func.count()).select_from(LeadLevelChange)).scalar()
    published = api.post(f"/rulesets/{rs}/publish").json
    after = lead_states(api)
    assert after["c"] == (20, "Cold") and after["d"] == (15, "Cold") and after["b"] == (60, "Hot")
    assert published["rescored_leads"] == preview["rescored_leads"]
    check_preview_came_true(preview, before, after)
    with app.extensions["leadpulse"].Session() as s:
        moves = s.execute(select(func.count()).select_from(LeadLevelChange)).scalar() - moves_before
    assert moves == preview["level_changes"]


def test_a_ruleset_that_is_not_the_primary_previews_its_own_score_or_as_the_primary(app, api, run_worker):
    create_levels(api)
    published_ruleset(api, {"demo": 30})
    trial = api.post("/rulesets", json={"name": "Trial"}).json["ruleset_id"]
    for event_type, weight in (("demo", 10), ("view", 40), ("webinar", 5)):
        api.post("/rules", json={"ruleset_id": trial, "event_type": event_type, "weight": weight})
    story(api, "a", ("demo", 0), ("view", 1))  # primary 30 Warm; trial 10 + 40 = 50
    story(api, "b", ("demo", 0), ("demo", 1))  # primary 60 Hot; trial 20
    story(api, "c", ("webinar", 0))  # primary 0 (no rule: no score); trial 5, but the edit turns webinar off
    run_worker()
    before = lead_states(api)
    edits = {"rules": [{"event_type": "webinar", "active": False}]}

    own = api.post(f"/rulesets/{trial}/rescore-preview", json=edits).json
    assert own["as_primary"] is False and own["levels"] is None and own["level_changes"] is None
    assert (own["leads"], own["rescored_leads"], own["score_changes"]) == (3, 2, 2)  # c: no rule scores it
    assert [(m["lead_id"], m["before"], m["after"]) for m in own["top_movers"]] == [
        ("a", {"score": 0, "level_id": None, "level": None}, {"score": 50, "level_id": None, "level": None}),
        ("b", {"score": 0, "level_id": None, "level": None}, {"score": 20, "level_id": None, "level": None}),
    ]
    as_primary = api.post(f"/rulesets/{trial}/rescore-preview", json={**edits, "as_primary": True}).json
    assert as_primary["as_primary"] is True and as_primary["level_changes"] == 2  # a Warm -> Hot, b Hot -> Cold
    assert lead_states(api) == before

    rule = rules_of(api, trial)["webinar"]
    api.put(f"/rules/{rule['rule_id']}", json={"active": False})
    assert api.post(f"/rulesets/{trial}/publish").json["rescored_leads"] == own["rescored_leads"]
    assert lead_states(api) == before  # not the primary: the leads' scores and levels stay
    with app.extensions["leadpulse"].Session() as s:
        kept = dict(
            s.execute(
                text(
                    "SELECT l.lead_id, s.score FROM lead_scores s JOIN leads l ON l.pk = s.lead_pk "
                    "WHERE s.ruleset_id = :r"
                ),
                {"r": trial},
            ).all()
        )
    assert kept == {"a": 50, "b": 20}
    assert api.put(f"/rulesets/{trial}", json={"is_primary": True}).status_code == 200
    check_preview_came_true(as_primary, before, lead_states(api))


def test_a_whole_ou_stream_is_in_lead_order_and_leaves_the_rest_of_its_transaction_planned_as_before(
    app, api, run_worker
):
    """models/event_queries.stream_in_lead_order: planned without index scans, and the setting back as it was once
    the cursor is declared (a publish goes on writing in the same transaction)."""
    published_ruleset(api, {"demo": 30})
    for n in range(7):  # interleaved leads, each with events arriving out of time order
        story(api, f"l{n % 3}", ("demo", 5 - n), ("view", n / 3))
    run_worker()
    ordered = select(Event.lead_pk, Event.occurred_at, Event.id).order_by(Event.lead_pk, Event.occurred_at, Event.id)
    setting = text("SELECT current_setting('enable_indexscan')")
    with app.extensions["leadpulse"].Session() as s, s.begin():
        expected = s.execute(ordered).all()
        rows = stream_in_lead_order(s, ordered)
        assert s.execute(setting).scalar() == "on"
        assert [tuple(r) for r in rows] == [tuple(r) for r in expected] and len(expected) == 14
        s.execute(text("SET LOCAL enable_indexscan = off"))
        stream_in_lead_order(s, ordered).close()
        assert s.execute(setting).scalar() == "off"  # as it was before, not the default


def test_replace_rules_and_windows_in_edits(api, run_worker):
    create_levels(api)
    rs = published_ruleset(api, {"demo": 30, "view": 5})
    story(api, "a", ("demo", 0), ("view", 1), ("view", 10))
    run_worker()
    # only the edits score: view at 10 from day 5 on; demo has no rule any more
    body = {"replace_rules": True, "rules": [{"event_type": "view", "weight": 10, "start_at": at(5)}]}
    r = api.post(f"/rulesets/{rs}/rescore-preview", json=body).json
    assert [(m["before"]["score"], m["after"]["score"]) for m in r["top_movers"]] == [(40, 10)]
    # an edit's window is laid over the stored rule's: ending before the stored start is refused
    rule = rules_of(api, rs)["view"]
    api.put(f"/rules/{rule['rule_id']}", json={"start_at": at(2)})
    r = api.post(f"/rulesets/{rs}/rescore-preview", json={"rules": [{"event_type": "view", "end_at": at(1)}]})
    assert r.status_code == 400 and "rules.0.end_at" in r.json["error"]["details"], r.json


BAD_TRIALS = [
    ({"rules": "demo"}, "rules"),
    ({"rules": [{"weight": 5}]}, "rules.0.event_type"),
    ({"rules": [{"event_type": "demo", "weight": "5"}]}, "rules.0.weight"),
    ({"rules": [{"event_type": "demo", "weight": 10**7}]}, "rules.0.weight"),
    ({"rules": [{"event_type": "brand_new"}]}, "rules.0.weight"),  # a new rule needs its weight
    ({"rules": [{"event_type": "demo", "weight": 1}, {"event_type": "demo", "weight": 2}]}, "rules.1.event_type"),
    ({"rules": [{"event_type": "demo", "start_at": at(2), "end_at": at(1)}]}, "rules.0.end_at"),
    ({"rules": [{"event_type": "demo", "icon": "x"}]}, "rules.0.icon"),
    ({"rules": [{"event_type": "DECAY", "weight": 1}]}, "rules.0.event_type"),
    ({"rules": [{"event_type": "demo", "weight": 1}] * 501}, "rules"),
    ({"replace_rules": "maybe"}, "replace_rules"),
    ({"surprise": 1}, "surprise"),
]


BAD_OUTCOMES = [
    ({}, "outcome"),
    ({"outcome": "deal_won"}, "outcome._schema"),
    ({"outcome": {}}, "outcome.event_type"),
    ({"outcome": {"event_type": "deal_won", "lifecycle_stage": "customer"}}, "outcome.event_type"),
    ({"outcome": {"event_type": "DECAY"}}, "outcome.event_type"),
    ({"outcome": {"event_type": ""}}, "outcome.event_type"),
    ({"outcome": {"lifecycle_stage": ""}}, "outcome.lifecycle_stage"),
    ({"outcome": {"lifecycle_stage": "cust'omer"}}, "outcome.lifecycle_stage"),
    ({"outcome": {"deal": "won"}}, "outcome.deal"),
    ({"outcome": {"event_type": "deal_won"}, "since": "last week"}, "since"),
    ({"outcome": {"event_type": "deal_won"}, "since": at(2), "until": at(1)}, "since"),
    ({"outcome": {"event_type": "deal_won"}, "since": "2999-01-01T00:00:00Z"}, "since"),  # after now, the default until
]


def test_bad_bodies_name_the_field(api):
    rs = published_ruleset(api, {"demo": 30})
    cases = [("rescore-preview", body, field) for body, field in [*BAD_TRIALS, ({"as_primary": "maybe"}, "as_primary")]]
    cases += [("backtest", {**body, "outcome": {"event_type": "deal_won"}}, field) for body, field in BAD_TRIALS]
    cases += [("backtest", body, field) for body, field in BAD_OUTCOMES]
    for path, body, field in cases:
        r = api.post(f"/rulesets/{rs}/{path}", json=body)
        assert r.status_code == 400 and field in r.json["error"]["details"], (path, body, r.json)
    assert api.post(f"/rulesets/{rs}/backtest", data="[", content_type="application/json").status_code == 400
    assert api.post(f"/rulesets/{rs}/rescore-preview", data="x", content_type="text/plain").status_code == 415


def test_another_ou_s_ruleset_is_not_found(client, api, settings):
    rs = published_ruleset(api, {"demo": 30})
    other = Api(client, make_tenant(settings, org="Globex", unit="East"))
    for path in ("rescore-preview", "backtest"):
        body = {"outcome": {"event_type": "x"}} if path == "backtest" else {}
        assert other.post(f"/rulesets/{rs}/{path}", json=body).status_code == 404
        assert api.post(f"/rulesets/nope/{path}", json=body).status_code == 404
        assert api.post(f"/rulesets/{rs}/{path}", json=body).status_code == 200


def worked_example(api, run_worker) -> tuple[str, str]:
    """Five leads over a week; the primary and a draft, scored by hand in the comments (levels: Cold 0-24, Warm
    25-49, Hot 50-74, Very Hot 75+; alerts on entering Hot, 24 h cooldown). The outcome is deal_won, no rule's."""
    create_levels(api)
    primary = published_ruleset(api, {"demo": 30, "view": 5, "unsub": -30})
    draft = api.post("/rulesets", json={"name": "Draft"}).json["ruleset_id"]
    for event_type, weight in (("demo", 20), ("view", 10), ("webinar", 25), ("unsub", -30)):
        api.post("/rules", json={"ruleset_id": draft, "event_type": event_type, "weight": weight})
    # primary: 5 Cold, 10, 40 Warm;        draft: 10 Cold, 20, 40 Warm;          won on day 5
    story(api, "L1", ("view", 0), ("view", 1), ("demo", 2), ("deal_won", 5))
    # primary: 30 Warm, 60 Hot (alert), 65; draft: 20 Cold, 40 Warm, 50 Hot (alert)
    story(api, "L2", ("demo", 0), ("demo", 1), ("view", 2))
    # primary: 0 Cold (no webinar rule);   draft: 25 Warm, 50 Hot (alert);       won on day 3
    story(api, "L3", ("webinar", 0), ("webinar", 1), ("deal_won", 3))
    # both: Cold
    story(api, "L4", ("view", 0))
    # primary: 30 Warm, 60 Hot (alert), 30 Warm, 60 Hot (2 h later: in the cooldown), 30 Warm, 60 Hot (alert: 2 days on)
    # draft:   20 Cold, 40 Warm, 10 Cold, 30 Warm, 0 Cold, 20 Cold
    story(api, "L5", ("demo", 0), ("demo", 0, 1), ("unsub", 0, 2), ("demo", 0, 3), ("unsub", 2), ("demo", 3))
    run_worker()
    return primary, draft


def by_level(version: dict) -> dict[str, tuple]:
    return {
        row["level"]: (row["leads"], row["reached_outcome"], row["precision"], row["lift"]) for row in version["levels"]
    }


def test_backtest_of_a_worked_example(app, api, run_worker):
    primary, draft = worked_example(api, run_worker)
    counts = table_counts(app)
    r = api.post(f"/rulesets/{draft}/backtest", json={"outcome": {"event_type": "deal_won"}})
    assert r.status_code == 200, r.json
    b = r.json
    assert table_counts(app) == counts  # nothing written
    assert (b["leads"], b["reached_outcome"], b["base_rate"], b["events_replayed"]) == (5, 2, 0.4, 17)
    assert b["alert_level"]["level"] == "Hot" and b["cooldown_hours"] == 24 and b["since"] is None
    assert b["versions"]["primary"]["ruleset_id"] == primary and b["versions"]["draft"]["ruleset_id"] == draft
    # base rate 2/5; lift = precision / 0.4
    assert by_level(b["versions"]["primary"]) == {
        "Cold": (3, 2, 0.6667, 1.6667),  # L1, L3 won after; L4 did not
        "Warm": (3, 1, 0.3333, 0.8333),  # L1 (Warm on day 2, won on day 5); L2, L5 not
        "Hot": (2, 0, 0.0, 0.0),  # L2, L5
        "Very Hot": (0, 0, None, None),
        "Unclassified": (0, 0, None, None),
    }
    assert by_level(b["versions"]["draft"]) == {
        "Cold": (4, 1, 0.25, 0.625),  # L1, L2, L4, L5
        "Warm": (4, 2, 0.5, 1.25),  # L1, L2, L3, L5
        "Hot": (2, 1, 0.5, 1.25),  # L2; L3 won after entering Hot
        "Very Hot": (0, 0, None, None),
        "Unclassified": (0, 0, None, None),
    }
    assert b["versions"]["primary"]["alerts"] == {"sent": 3, "suppressed": 1}
    assert b["versions"]["draft"]["alerts"] == {"sent": 2, "suppressed": 0}

    # from day 2: a lead counts for the level it held then; alerts before it are not counted (but start cooldowns)
    b = api.post(f"/rulesets/{draft}/backtest", json={"outcome": {"event_type": "deal_won"}, "since": at(2)}).json
    assert b["since"] == at(2) and (b["leads"], b["reached_outcome"]) == (5, 2)
    assert by_level(b["versions"]["primary"])["Warm"][:2] == (2, 1)  # L1 (day 2), L5 (day 2)
    assert by_level(b["versions"]["primary"])["Hot"][:2] == (2, 0)  # L2 and L5 held Hot on day 2
    assert b["versions"]["primary"]["alerts"] == {"sent": 1, "suppressed": 0}  # L5 on day 3
    assert by_level(b["versions"]["draft"])["Hot"][:2] == (2, 1)  # L3 held it, L2 entered on day 2
    assert b["versions"]["draft"]["alerts"] == {"sent": 1, "suppressed": 0}  # L2 on day 2

    # until day 4: L1's win on day 5 is outside the period
    b = api.post(f"/rulesets/{draft}/backtest", json={"outcome": {"event_type": "deal_won"}, "until": at(4)}).json
    assert (b["leads"], b["reached_outcome"], b["base_rate"], b["events_replayed"]) == (5, 1, 0.2, 16)
    assert by_level(b["versions"]["primary"])["Cold"] == (3, 1, 0.3333, 1.6667)

    # the cooldown is the OU's: at 1 h, the primary's second Hot entry of L5 (2 h after its first) alerts too
    assert api.put("/settings/ou/alerts", json={"cooldown_hours": 1}).status_code == 200
    b = api.post(f"/rulesets/{draft}/backtest", json={"outcome": {"event_type": "deal_won"}}).json
    assert b["versions"]["primary"]["alerts"] == {"sent": 4, "suppressed": 0} and b["cooldown_hours"] == 1


def test_backtest_edits_and_no_primary(api, run_worker):
    primary, draft = worked_example(api, run_worker)
    # the draft with webinar off scores L3 like the primary does: 0, Cold
    body = {"outcome": {"event_type": "deal_won"}, "rules": [{"event_type": "webinar", "active": False}]}
    b = api.post(f"/rulesets/{draft}/backtest", json=body).json
    assert by_level(b["versions"]["draft"])["Hot"][:2] == (1, 0)  # L2 only
    assert api.put(f"/rulesets/{primary}", json={"is_primary": False}).status_code == 200
    b = api.post(f"/rulesets/{draft}/backtest", json={"outcome": {"event_type": "deal_won"}}).json
    assert b["versions"]["primary"] is None and by_level(b["versions"]["draft"])["Hot"][:2] == (2, 1)


def test_backtest_on_a_hubspot_lifecycle_stage(hooked, run_worker):  # noqa: F811
    fake, client, api, app, src = hooked
    create_levels(api)
    rs = published_ruleset(api, {"demo": 30})
    contact = fake.add_contact("ada@x.io")
    email = {"aliases": [{"alias_kind": "email", "raw_value": "ada@x.io"}]}
    for day in (0, 1):
        assert api.post("/ingest", json={**email, "event_type": "demo", "timestamp": at(day)}).status_code == 202
    ingest(api, "bob", "demo", timestamp=at(0))
    ms = int((T0 + timedelta(days=3)).timestamp() * 1000)
    change = {"objectId": int(contact), "subscriptionType": "contact.propertyChange", "propertyName": "lifecyclestage"}
    r = deliver(
        client,
        src["url"],
        [
            {"objectId": int(contact), "eventId": 1, "subscriptionType": "contact.creation"},
            {**change, "eventId": 2, "propertyValue": "customer", "occurredAt": ms},
            {**change, "eventId": 3, "propertyValue": "evangelist", "occurredAt": ms + 1000},
        ],
    )
    assert r.status_code == 200 and r.json["applied"] == 3, r.json
    from tests.helpers import settle

    settle(app, run_worker)
    b = api.post(f"/rulesets/{rs}/backtest", json={"outcome": {"lifecycle_stage": "Customer"}}).json
    assert (b["leads"], b["reached_outcome"], b["base_rate"]) == (2, 1, 0.5)
    # Ada: Warm on day 0, Hot on day 1, customer on day 3; Bob: Warm
    assert by_level(b["versions"]["draft"])["Hot"] == (1, 1, 1.0, 2.0)
    assert by_level(b["versions"]["draft"])["Warm"] == (2, 1, 0.5, 1.0)
    # the change is kept as an event that never scores, and the lead's score is the demos'
    ada = [lead for lead in leads_by_id(api).values() if lead["lead_id"] != "bob"][0]
    assert ada["score"] == 60
    with app.extensions["leadpulse"].Session() as s:
        assert s.execute(select(func.count()).select_from(LeadScore)).scalar() == 2
