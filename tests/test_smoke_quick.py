def test_quick(api, run_worker):
    r = api.post("/engagement-levels", json={"name": "Cold", "min_score": 0, "max_score": 24})
    assert r.status_code == 201, r.json
    r = api.post("/rulesets", json={"name": "Main", "is_primary": True})
    assert r.status_code == 201, r.json
    rs = r.json["ruleset_id"]
    r = api.post("/rules", json={"ruleset_id": rs, "event_type": "page_view", "weight": 5})
    assert r.status_code == 201, r.json
    r = api.post(f"/rulesets/{rs}/publish")
    assert r.status_code == 200, r.json
    r = api.post("/ingest", json={"lead_id": "l1", "event_type": "page_view"})
    assert r.status_code == 202, r.json
    run_worker()
    r = api.get("/leads")
    assert r.status_code == 200, r.json
    print(r.json)
    assert r.json[0]["score"] == 5
