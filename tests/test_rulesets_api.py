"""Rulesets and rules: CRUD, primary, 409s, windows, and publishing that rescores from stored events."""

from tests.helpers import create_levels, ingest, leads_by_id, published_ruleset


def scores(api):
    return {k: v["score"] for k, v in leads_by_id(api).items()}


def test_ruleset_crud_and_single_primary(api):
    r = api.post("/rulesets", json={"name": "Marketing", "score_column": "total_score"})
    assert r.status_code == 201
    a = r.json
    assert a["status"] == "draft" and a["is_primary"] is False and a["active"] is True
    assert a["published_at"] is None  # and the document says it may be:
    assert api.get("/openapi.json").json["components"]["schemas"]["Ruleset"]["properties"]["published_at"]["nullable"]
    b = api.post("/rulesets", json={"name": "Sales", "is_primary": True}).json
    c = api.post("/rulesets", json={"name": "Exp", "is_primary": True}).json
    listed = {rs["name"]: rs["is_primary"] for rs in api.get("/rulesets").json}
    assert listed == {"Marketing": False, "Sales": False, "Exp": True}
    r = api.put(f"/rulesets/{a['ruleset_id']}", json={"is_primary": True})
    assert r.status_code == 200 and r.json["is_primary"] is True
    assert [rs["name"] for rs in api.get("/rulesets").json if rs["is_primary"]] == ["Marketing"]
    assert api.post("/rulesets", json={"name": "sales"}).status_code == 409
    assert api.put(f"/rulesets/{c['ruleset_id']}", json={"name": "Sales"}).status_code == 409
    assert api.delete(f"/rulesets/{b['ruleset_id']}").status_code == 204
    assert api.get(f"/rulesets/{b['ruleset_id']}").status_code == 404


def test_ruleset_bad_input(api):
    for body, field in [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x", "is_primary": "yes please"}, "is_primary"),
        ({"name": "x", "score_column": "other"}, "score_column"),
        ({"name": "x", "start_date": "soon"}, "start_date"),
        ({"name": "x", "start_date": "2025-02-01T00:00:00Z", "end_date": "2025-01-01T00:00:00Z"}, "end_date"),
        ({"name": "x", "status": "published"}, "status"),
    ]:
        r = api.post("/rulesets", json=body)
        assert r.status_code == 400 and field in r.json["error"]["details"], (body, r.json)
    assert api.get("/rulesets").json == []
    rs = api.post("/rulesets", json={"name": "x", "start_date": "2025-02-01T00:00:00Z"}).json
    r = api.put(f"/rulesets/{rs['ruleset_id']}", json={"end_date": "2025-01-01T00:00:00Z"})
    assert r.status_code == 400 and "end_date" in r.json["error"]["details"]


def test_rule_crud_duplicates_and_bad_input(api):
    rs = api.post("/rulesets", json={"name": "Main"}).json["ruleset_id"]
    r = api.post("/rules", json={"ruleset_id": rs, "event_type": "email_open", "weight": 5})
    assert r.status_code == 201
    rule = r.json
    assert rule["active"] is True and rule["ruleset_id"] == rs and rule["rule_id"]
    r = api.post("/rules", json={"ruleset_id": rs, "event_type": "email_open", "weight": 9})
    assert r.status_code == 409 and "event_type" in r.json["error"]["details"]
    other = api.post("/rules", json={"ruleset_id": rs, "event_type": "click", "weight": 1}).json
    assert api.put(f"/rules/{other['rule_id']}", json={"event_type": "email_open"}).status_code == 409
    # no ruleset_id and no primary ruleset
    r = api.post("/rules", json={"event_type": "demo", "weight": 1})
    assert r.status_code == 400 and "ruleset_id" in r.json["error"]["details"]
    api.put(f"/rulesets/{rs}", json={"is_primary": True})
    assert api.post("/rules", json={"event_type": "demo", "weight": 1}).json["ruleset_id"] == rs
    for body, field in [
        ({"ruleset_id": rs, "weight": 1}, "event_type"),
        ({"ruleset_id": rs, "event_type": "a"}, "weight"),
        ({"ruleset_id": rs, "event_type": "a", "weight": "5"}, "weight"),
        ({"ruleset_id": rs, "event_type": "a", "weight": 2.5}, "weight"),
        ({"ruleset_id": rs, "event_type": "a", "weight": 10**9}, "weight"),
        (
            {
                "ruleset_id": rs,
                "event_type": "a",
                "weight": 1,
                "start_at": "2025-02-01T00:00:00Z",
                "end_at": "2025-01-01T00:00:00Z",
            },
            "end_at",
        ),
        ({"ruleset_id": rs, "event_type": "a", "weight": 1, "active": "maybe"}, "active"),
    ]:
        r = api.post("/rules", json=body)
        assert r.status_code == 400 and field in r.json["error"]["details"], (body, r.json)
    assert api.post("/rules", json={"ruleset_id": "nope", "event_type": "a", "weight": 1}).status_code == 404
    # round-tripping what GET returned is accepted; server-owned fields are ignored
    got = [x for x in api.get(f"/rulesets/{rs}/rules").json if x["event_type"] == "email_open"][0]
    got.update(weight=7, org_id="forged", unit_id="forged")
    r = api.put(f"/rules/{rule['rule_id']}", json=got)
    assert r.status_code == 200 and r.json["weight"] == 7 and r.json["unit_id"] != "forged"
    assert sorted(x["event_type"] for x in api.get("/rules").json) == ["click", "demo", "email_open"]
    assert api.delete(f"/rules/{rule['rule_id']}").status_code == 204
    assert api.delete(f"/rules/{rule['rule_id']}").status_code == 404


def test_draft_scores_nothing_publish_rescores_unpublish_withdraws(api, run_worker):
    create_levels(api)
    rs = api.post("/rulesets", json={"name": "Main", "is_primary": True}).json["ruleset_id"]
    api.post("/rules", json={"ruleset_id": rs, "event_type": "demo_request", "weight": 30})
    api.post("/rules", json={"ruleset_id": rs, "event_type": "page_view", "weight": 5})
    for lead, n in (("a", 1), ("b", 2), ("c", 3)):
        for _ in range(n):
            ingest(api, lead, "demo_request")
    ingest(api, "d", "page_view")
    run_worker()
    assert scores(api) == {"a": 0, "b": 0, "c": 0, "d": 0}
    r = api.post(f"/rulesets/{rs}/publish")
    assert r.status_code == 200 and r.json["rescored_leads"] == 4 and r.json["ruleset"]["status"] == "published"
    assert scores(api) == {"a": 30, "b": 60, "c": 90, "d": 5}
    levels = {k: v["level"]["name"] for k, v in leads_by_id(api).items()}
    assert levels == {"a": "Warm", "b": "Hot", "c": "Very Hot", "d": "Cold"}
    # editing a rule changes nothing until republished: not stored scores, not new events, not replays
    rule = [x for x in api.get("/rules").json if x["event_type"] == "demo_request"][0]
    assert api.put(f"/rules/{rule['rule_id']}", json={"weight": 10}).status_code == 200
    assert scores(api)["c"] == 90
    ingest(api, "c", "demo_request")
    run_worker()
    assert scores(api)["c"] == 120
    ingest(api, "b", "demo_request", timestamp="2020-01-01T00:00:00Z")  # late: replays b
    run_worker()
    assert scores(api)["b"] == 90
    api.post(f"/rulesets/{rs}/publish")
    assert scores(api) == {"a": 10, "b": 30, "c": 40, "d": 5}
    # new events after publishing score incrementally on top
    ingest(api, "a", "demo_request")
    run_worker()
    assert scores(api)["a"] == 20
    # a rule added to a published ruleset waits for the next publish too
    api.post("/rules", json={"ruleset_id": rs, "event_type": "webinar", "weight": 50})
    ingest(api, "d", "webinar")
    run_worker()
    assert scores(api)["d"] == 5
    r = api.post(f"/rulesets/{rs}/unpublish")
    assert r.status_code == 200 and r.json["ruleset"]["status"] == "draft"
    assert scores(api) == {"a": 0, "b": 0, "c": 0, "d": 0}
    assert all(v["level"]["name"] == "Cold" for v in leads_by_id(api).values())


def test_changing_primary_switches_every_leads_score(api, run_worker):
    a = published_ruleset(api, {"x": 10}, name="A", primary=True)
    b = published_ruleset(api, {"x": 3}, name="B", primary=False)
    ingest(api, "l1", "x")
    ingest(api, "l1", "x")
    run_worker()
    lead = leads_by_id(api)["l1"]
    assert lead["score"] == 20 and lead["engagement_scores"] == {a: 20, b: 6}
    assert lead["ruleset_id"] == a and lead["ruleset_names"] == {a: "A", b: "B"}
    api.put(f"/rulesets/{b}", json={"is_primary": True})
    assert leads_by_id(api)["l1"]["score"] == 6
    api.delete(f"/rulesets/{b}")
    lead = leads_by_id(api)["l1"]
    assert lead["score"] == 0 and lead["ruleset_id"] == ""  # no primary left
    r = api.get("/score/l1")
    assert r.json["score"] == 20 and r.json["ruleset_id"] == a  # the highest when there is no primary


def test_windows_of_ruleset_and_rule_use_event_time(api, run_worker):
    rs = api.post(
        "/rulesets",
        json={
            "name": "Q1",
            "is_primary": True,
            "start_date": "2025-01-01T00:00:00Z",
            "end_date": "2025-03-31T23:59:59Z",
        },
    ).json["ruleset_id"]
    api.post("/rules", json={"ruleset_id": rs, "event_type": "open", "weight": 1})
    api.post(
        "/rules",
        json={
            "ruleset_id": rs,
            "event_type": "promo",
            "weight": 100,
            "start_at": "2025-02-01T00:00:00Z",
            "end_at": "2025-02-28T00:00:00Z",
        },
    )
    api.post(f"/rulesets/{rs}/publish")
    for ts in ("2024-12-31T23:59:59Z", "2025-01-01T00:00:00Z", "2025-03-31T23:59:59Z", "2025-04-01T00:00:00Z"):
        ingest(api, "l1", "open", timestamp=ts)
    for ts in ("2025-01-15T00:00:00Z", "2025-02-15T00:00:00Z"):
        ingest(api, "l1", "promo", timestamp=ts)
    run_worker()
    assert scores(api) == {"l1": 102}


def test_inactive_ruleset_stops_scoring_new_events(api, run_worker):
    rs = published_ruleset(api, {"open": 5})
    ingest(api, "l1", "open")
    run_worker()
    api.put(f"/rulesets/{rs}", json={"active": False})
    ingest(api, "l1", "open")
    run_worker()
    assert scores(api) == {"l1": 5}


def test_every_crud_list_pages_like_the_rest_of_the_api(api):
    """Rulesets, rules, decays, levels and webhook sources take page and limit: the envelope with the total, the
    reference's own shape without them, a bad page named; another OU's rows never counted."""
    rs = api.post("/rulesets", json={"name": "Engagement"}).json["ruleset_id"]
    for n in range(3):
        assert api.post("/rules", json={"ruleset_id": rs, "event_type": f"e{n}", "weight": n + 1}).status_code == 201
        assert api.post("/decays", json={"inactive_for": n + 1, "unit": "days", "decrease": 1}).status_code == 201
    assert api.post("/engagement-levels", json={"name": "Cold", "min_score": 0, "max_score": None}).status_code == 201
    bare = api.get("/decays")
    assert isinstance(bare.json, list) and len(bare.json) == 3 and bare.headers["X-Total-Count"] == "3"
    first, second = (api.get("/decays", query_string={"page": p, "limit": 2}).json for p in (1, 2))
    assert (first["total"], first["page"], first["limit"], len(first["decays"])) == (3, 1, 2, 2)
    assert len(second["decays"]) == 1
    assert {d["decay_id"] for d in first["decays"] + second["decays"]} == {d["decay_id"] for d in bare.json}
    assert api.get("/rules", query_string={"limit": 1}).json["total"] == 3
    assert api.get("/rulesets", query_string={"page": 1}).json["rulesets"][0]["ruleset_id"] == rs
    assert api.get("/webhooks/sources", query_string={"page": 1}).json == {
        "sources": [],
        "total": 0,
        "page": 1,
        "limit": 50,
    }
    levels = api.get("/engagement-levels")
    assert [lv["name"] for lv in levels.json["levels"]] == ["Cold"]  # the reference wraps this list
    assert api.get("/engagement-levels", query_string={"limit": 5}).json["total"] == 1
    for query in ({"page": 0}, {"limit": 501}, {"limit": "1_0"}, {"page": "x"}):
        r = api.get("/decays", query_string=query)
        assert r.status_code == 400 and set(query) <= set(r.json["error"]["details"]), (query, r.json)


def test_an_ou_keeps_a_bounded_number_of_each_configuration_object(api):
    """Past the cap a create is a 409 naming the limit (each decay rule is a term of every pass); the unpaged list
    always holds them all."""
    from webapp.services.decays import DecayCrud

    cap = DecayCrud.max_per_unit
    for n in range(cap):
        assert api.post("/decays", json={"inactive_for": n + 1, "unit": "days", "decrease": 1}).status_code == 201
    r = api.post("/decays", json={"inactive_for": 999, "unit": "days", "decrease": 1})
    assert (
        r.status_code == 409 and r.json["error"]["code"] == "limit_reached" and str(cap) in r.json["error"]["message"]
    )
    listed = api.get("/decays").json
    assert len(listed) == cap
    assert api.delete(f"/decays/{listed[0]['decay_id']}").status_code == 204
    assert api.post("/decays", json={"inactive_for": 999, "unit": "days", "decrease": 1}).status_code == 201
