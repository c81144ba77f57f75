"""Engagement levels as the reference: the worked example end to end, validation, reclassification."""

from sqlalchemy import func, select

from models.levels import LeadLevelChange, LevelHistory
from tests.helpers import REFERENCE_LEVELS, create_levels, ingest, leads_by_id, published_ruleset


def level_names(api):
    return {lid: (lead["level"] or {}).get("name") for lid, lead in leads_by_id(api).items()}


def test_reference_worked_example_end_to_end(api, run_worker):
    ids = create_levels(api)
    published_ruleset(api, {"page_view": 5, "email_open": 10, "demo_request": 30})
    # 20, 35, 65 and 90 points through ingested events
    plan = {
        "lead_20": ["email_open", "page_view", "page_view"],
        "lead_35": ["demo_request", "page_view"],
        "lead_65": ["demo_request", "demo_request", "page_view"],
        "lead_90": ["demo_request", "demo_request", "demo_request"],
    }
    for lead, events in plan.items():
        for et in events:
            ingest(api, lead, et)
    run_worker()
    leads = leads_by_id(api)
    assert {k: v["score"] for k, v in leads.items()} == {"lead_20": 20, "lead_35": 35, "lead_65": 65, "lead_90": 90}
    assert level_names(api) == {"lead_20": "Cold", "lead_35": "Warm", "lead_65": "Hot", "lead_90": "Very Hot"}
    assert leads["lead_65"]["level"] == {"id": ids["Hot"], "name": "Hot", "color": "#f97316"}

    # Changing the Hot range moves the leads at once: Warm shrinks to 25-29, Hot becomes 30-74.
    r = api.put(f"/engagement-levels/{ids['Warm']}", json={"max_score": 29})
    assert r.status_code == 200, r.json
    r = api.put(f"/engagement-levels/{ids['Hot']}", json={"min_score": 30})
    assert r.status_code == 200, r.json
    assert level_names(api) == {"lead_20": "Cold", "lead_35": "Hot", "lead_65": "Hot", "lead_90": "Very Hot"}
    # and narrowing Hot to 30-60 leaves lead_65 unclassified
    r = api.put(f"/engagement-levels/{ids['Hot']}", json={"max_score": 60})
    assert r.status_code == 200
    assert level_names(api)["lead_65"] is None
    assert leads_by_id(api, level="none").keys() == {"lead_65"}
    assert leads_by_id(api, level="hot").keys() == {"lead_35"}


def test_level_changes_are_recorded_with_time_and_cause(api, app, run_worker, tenant):
    ids = create_levels(api)
    published_ruleset(api, {"demo_request": 30})
    ingest(api, "l1", "demo_request")
    run_worker()
    ingest(api, "l1", "demo_request")
    run_worker()
    api.put(f"/engagement-levels/{ids['Hot']}", json={"max_score": 59})
    api.put(f"/engagement-levels/{ids['Very Hot']}", json={"min_score": 60})
    with app.extensions["leadpulse"].Session() as s:
        changes = s.execute(select(LeadLevelChange).order_by(LeadLevelChange.id)).scalars().all()
        history = s.execute(select(LevelHistory).order_by(LevelHistory.created_at)).scalars().all()
    moves = [(c.from_level_id, c.to_level_id, c.score, c.cause) for c in changes]
    assert moves == [
        (None, ids["Warm"], 30, "score"),
        (ids["Warm"], ids["Hot"], 60, "score"),
        (ids["Hot"], None, 60, "reconfiguration"),  # Hot now ends at 59
        (None, ids["Very Hot"], 60, "reconfiguration"),  # Very Hot now starts at 60
    ]
    assert all(c.changed_at is not None for c in changes)
    assert [(h.action, len(h.snapshot)) for h in history] == [("create", n) for n in (1, 2, 3, 4)] + [("update", 4)] * 2
    assert {lv["name"]: lv["max_score"] for lv in history[-1].snapshot}["Hot"] == 59


def test_a_reclassification_records_its_moves_per_pair_of_levels_with_their_score_range(api, app, run_worker):
    """One row per (from level, to level) with the lowest and highest score and the count, not one row per lead."""
    ids = create_levels(api)
    published_ruleset(api, {"page_view": 5, "demo_request": 30})
    for lead, events in {"a": ["demo_request"], "b": ["demo_request", "page_view"], "c": ["demo_request"] * 2}.items():
        for event_type in events:
            ingest(api, lead, event_type)
    run_worker()  # a 30 and b 35 Warm, c 60 Hot
    with app.extensions["leadpulse"].Session() as s:
        scored = s.execute(select(func.max(LeadLevelChange.id))).scalar()
    assert api.put(f"/engagement-levels/{ids['Warm']}", json={"max_score": 29}).status_code == 200
    assert api.put(f"/engagement-levels/{ids['Hot']}", json={"min_score": 30}).status_code == 200
    with app.extensions["leadpulse"].Session() as s:
        rows = s.execute(select(LeadLevelChange).where(LeadLevelChange.id > scored).order_by(LeadLevelChange.id))
        moves = [
            (c.lead_pk, c.from_level_id, c.to_level_id, c.score, c.max_score, c.leads, c.cause) for c in rows.scalars()
        ]
    assert moves == [
        (None, ids["Warm"], None, 30, 35, 2, "reconfiguration"),  # Warm now ends at 29
        (None, None, ids["Hot"], 30, 35, 2, "reconfiguration"),  # Hot now starts at 30
    ]
    assert level_names(api) == {"a": "Hot", "b": "Hot", "c": "Hot"}
    assert leads_by_id(api, level="hot").keys() == {"a", "b", "c"}
    assert leads_by_id(api, level="warm") == {}


def test_list_shape_order_and_defaults(api):
    r = api.post("/engagement-levels", json={"name": "Very Hot", "min_score": 75, "max_score": None, "order": 4})
    assert r.status_code == 201
    body = r.json
    assert body["color"] == "#64748b"  # default color
    assert body["created_at"].endswith("Z")
    r = api.post("/engagement-levels", json={"name": "Cold", "min_score": 0, "max_score": 24})
    assert r.json["order"] == 5  # appended after the highest order
    r = api.get("/engagement-levels")
    assert r.status_code == 200
    assert [lv["name"] for lv in r.json["levels"]] == ["Very Hot", "Cold"]
    assert set(r.json["levels"][0]) >= {"id", "name", "min_score", "max_score", "color", "order"}
    spec = api.get("/openapi.json").json  # documented as answered: the levels under "levels", not a bare array
    listed = spec["paths"]["/engagement-levels"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    unpaged, paged = (spec["components"]["schemas"][s["$ref"].rsplit("/", 1)[1]] for s in listed["anyOf"])
    assert unpaged["properties"]["levels"] == {"type": "array", "items": {"$ref": "#/components/schemas/Level"}}
    assert set(paged["required"]) == {"total", "page", "limit"}


def test_overlap_bad_color_duplicate_and_last_level(api):
    ids = create_levels(api)
    r = api.post("/engagement-levels", json={"name": "Lukewarm", "min_score": 40, "max_score": 55})
    assert r.status_code == 400 and r.json["error"]["code"] == "overlapping_ranges"
    assert "min_score" in r.json["error"]["details"]
    r = api.post("/engagement-levels", json={"name": "Super Hot", "min_score": 100, "max_score": None})
    assert r.status_code == 400  # Very Hot is open-ended: 100+ overlaps it
    r = api.post("/engagement-levels", json={"name": "Odd", "min_score": -10, "max_score": -1, "color": "red"})
    assert r.status_code == 400 and "color" in r.json["error"]["details"]
    r = api.post("/engagement-levels", json={"name": "Odd", "min_score": -10, "max_score": -1, "color": "#12345"})
    assert r.status_code == 400 and "color" in r.json["error"]["details"]
    r = api.post("/engagement-levels", json={"name": "hot", "min_score": -10, "max_score": -1})
    assert r.status_code == 409 and "name" in r.json["error"]["details"]
    r = api.put(f"/engagement-levels/{ids['Warm']}", json={"name": "Cold"})
    assert r.status_code == 409
    r = api.put(f"/engagement-levels/{ids['Warm']}", json={"max_score": 10})
    assert r.status_code == 400 and "max_score" in r.json["error"]["details"]
    r = api.post("/engagement-levels", json={"name": "Neg", "min_score": -10, "max_score": -1, "color": "#AbCdEf"})
    assert r.status_code == 201
    # Nothing half-written: the table is the reference's four plus Neg, unchanged by the failures.
    names = sorted(lv["name"] for lv in api.get("/engagement-levels").json["levels"])
    assert names == sorted([lv["name"] for lv in REFERENCE_LEVELS] + ["Neg"])
    for name in ["Cold", "Warm", "Hot", "Very Hot"]:
        assert api.delete(f"/engagement-levels/{ids[name]}").status_code == 204
    last = api.get("/engagement-levels").json["levels"]
    assert len(last) == 1
    r = api.delete(f"/engagement-levels/{last[0]['id']}")
    assert r.status_code == 400 and r.json["error"]["code"] == "last_level"


def test_missing_and_wrong_typed_fields(api):
    cases = [
        ({}, {"name", "min_score"}),
        ({"name": "", "min_score": 0}, {"name"}),
        ({"name": "A", "min_score": "10"}, {"min_score"}),
        ({"name": "A", "min_score": 1.5}, {"min_score"}),
        ({"name": "A", "min_score": 0, "max_score": "x"}, {"max_score"}),
        ({"name": "A", "min_score": 10, "max_score": 5}, {"max_score"}),
        ({"name": "A", "min_score": 0, "order": "first"}, {"order"}),
        ({"name": "A", "min_score": 0, "unit_id": "x"}, {"unit_id"}),
    ]
    for body, fields in cases:
        r = api.post("/engagement-levels", json=body)
        assert r.status_code == 400, (body, r.json)
        assert set(r.json["error"]["details"]) == fields, (body, r.json)
    assert api.get("/engagement-levels").json == {"levels": []}


def test_delete_reclassifies_and_records_the_move(api, app, run_worker):
    ids = create_levels(api)
    published_ruleset(api, {"demo_request": 30})
    ingest(api, "l1", "demo_request")
    run_worker()
    assert level_names(api) == {"l1": "Warm"}
    assert api.delete(f"/engagement-levels/{ids['Warm']}").status_code == 204
    assert level_names(api) == {"l1": None}
    assert api.put(f"/engagement-levels/{ids['Cold']}", json={"max_score": 49}).status_code == 200
    assert level_names(api) == {"l1": "Cold"}
    with app.extensions["leadpulse"].Session() as s:
        moves = [
            (c.from_level_id, c.to_level_id, c.cause)
            for c in s.execute(select(LeadLevelChange).order_by(LeadLevelChange.id)).scalars()
        ]
    assert moves == [
        (None, ids["Warm"], "score"),
        (ids["Warm"], None, "reconfiguration"),
        (None, ids["Cold"], "reconfiguration"),
    ]


def test_a_level_change_is_answered_as_committed_when_the_database_drops_connections_right_after(api, settings):
    """The database restarts just after a level change commits, and the web's pooled connections die with it: the change
    is answered 201 as committed, not 503 (a client's retry would then meet its own level as a 409 duplicate); the
    HubSpot options it marked stale wait for the sweep."""
    from sqlalchemy import create_engine, event, text
    from sqlalchemy.orm import Session
    from sqlalchemy.pool import NullPool

    from models.db import SIDE_POOLS, get_engine
    from models.levels import EngagementLevel

    outside = create_engine(settings.database_url, poolclass=NullPool)
    dropped = []

    def restart(session):
        if not dropped:  # once, right after the level's commit
            with outside.connect() as conn:
                dropped.append(
                    conn.execute(
                        text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                    ).scalar()
                )

    create_levels(api, REFERENCE_LEVELS[:1])
    event.listen(Session, "after_commit", restart)
    try:
        r = api.post("/engagement-levels", json=REFERENCE_LEVELS[1])
    finally:
        event.remove(Session, "after_commit", restart)
        for side in (None, *SIDE_POOLS):  # the next test starts on live connections
            get_engine(settings.database_url, side).dispose()
    assert dropped and dropped[0] >= 1
    assert r.status_code == 201, r.json
    with outside.connect() as conn:
        names = conn.execute(select(EngagementLevel.name).where(EngagementLevel.unit_id == api.tenant.unit_id)).all()
        assert sorted(n for (n,) in names) == sorted(lv["name"] for lv in REFERENCE_LEVELS[:2])
    outside.dispose()
