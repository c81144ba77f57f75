"""Inputs that once reached the database or the parser raw: each must be a clean 4xx, never a 500."""

import base64

from tests.auth_helpers import member_client
from tests.test_ingest import counts


def post_raw(api, path, raw: str):
    return api.post(path, data=raw.encode("utf-8", "surrogatepass"), headers={"Content-Type": "application/json"})


def test_nan_infinity_and_deep_nesting_are_malformed_json(api, client, app):
    for raw in (
        '{"lead_id": "a", "event_type": "x", "metadata": {"n": NaN}}',
        '{"lead_id": "a", "event_type": "x", "metadata": {"n": Infinity}}',
        '{"lead_id": "a", "event_type": "x", "metadata": {"n": -Infinity}}',
        "[" * 100000,
    ):
        r = post_raw(api, "/ingest", raw)
        assert r.status_code == 400 and r.json["error"]["code"] == "malformed_json", raw[:40]
    r = client.post("/auth/login", data="[" * 100000, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    r = post_raw(api, "/ingest", '{"lead_id": "a", "event_type": "x", "metadata": {"n": 1e400}}')
    assert r.status_code == 400
    deep = '{"lead_id": "a", "event_type": "x", "metadata": ' + '{"a": ' * 600 + "1" + "}" * 600 + "}"
    r = post_raw(api, "/ingest", deep)
    assert r.status_code == 400 and "nested deeper" in r.json["error"]["message"]
    assert counts(app) == (0, 0, 0)


def test_lone_surrogates_are_refused(api, client):
    for path, raw, field in [
        ("/ingest", '{"lead_id": "a\\ud800", "event_type": "x"}', "lead_id"),
        ("/ingest", '{"lead_id": "a", "event_type": "x", "metadata": {"k\\udc00": 1}}', "metadata.k\udc00"),
        ("/leads", '{"id": "\\ud800"}', "id"),
        ("/engagement-levels", '{"name": "\\ud800", "min_score": 0}', "name"),
        ("/leads/scores", '{"lead_ids": ["\\ud800"]}', "lead_ids.0"),
    ]:
        r = post_raw(api, path, raw)
        assert r.status_code == 400 and field in r.json["error"]["details"], (path, r.json)
    r = client.post(
        "/auth/login", data='{"email": "a@b.io", "password": "\\ud800"}', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400 and "password" in r.json["error"]["details"]


def test_out_of_range_timestamps_and_scores(api):
    for ts in ("9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+05:00"):
        r = api.post("/ingest", json={"lead_id": "a", "event_type": "x", "timestamp": ts})
        assert r.status_code == 400 and "timestamp" in r.json["error"]["details"]
        r = api.post("/rulesets", json={"name": "x", "start_date": ts})
        assert r.status_code == 400 and "start_date" in r.json["error"]["details"]
    for qs in ("min_score=99999999999999999999", "max_score=-99999999999999999999"):
        assert api.get(f"/leads?{qs}").status_code == 400


def test_hostile_authorization_and_cookies(client, tenant):
    for value in (
        "Basic éééé",
        "Basic " + base64.b64encode(b"lp_\x00x:secret").decode(),
        "Basic " + base64.b64encode("ü:ö".encode("latin-1")).decode(),
        "Basic",
        "Bearer ",
    ):
        r = client.get("/leads", headers={"Authorization": value})
        assert r.status_code == 401, value
    headers = member_client(client, tenant)
    client.set_cookie("activeOu", "\x00bad")
    r = client.get("/leads", headers=headers)
    assert r.status_code == 400 and r.json["error"]["code"] == "no_active_ou"
    client.set_cookie("activeOu", "x" * 3000)
    assert client.get("/leads", headers=headers).status_code == 400


def test_metadata_limit_counts_utf8_bytes(api):
    r = api.post("/ingest", json={"lead_id": "a", "event_type": "x", "metadata": {"a": "€" * 20000}})
    assert r.status_code == 202  # 60 KB of UTF-8, although 120 KB as escaped ASCII
    r = api.post("/ingest", json={"lead_id": "a", "event_type": "x", "metadata": {"a": "€" * 35000}})
    assert r.status_code == 413


def test_alias_longer_than_the_column_once_lowercased(api, app):
    r = api.post("/ingest", json={"aliases": [{"alias_kind": "email", "raw_value": "\u0130" * 200}], "event_type": "x"})
    assert r.status_code == 400 and "aliases" in r.json["error"]["details"]
    assert counts(app) == (0, 0, 0)


def test_bad_idempotency_key_header(api, app):
    for key in ("a\x00b", "x" * 201, "tab\there"):
        r = api.post("/ingest", json={"lead_id": "a", "event_type": "x"}, headers={"Idempotency-Key": key})
        assert r.status_code == 400 and "Idempotency-Key" in r.json["error"]["details"], key
    assert counts(app) == (0, 0, 0)


def test_a_body_full_of_unstorable_strings_is_named_by_its_first_problems(client, api, app):
    """Before any credential is checked (login), a body of 30,000 NUL strings costs one bounded walk and a short answer."""
    from webapp.schema_base import MAX_PROBLEMS

    body = {"email": "a@b.io", "password": "x" * 10, "zz": ["\u0000"] * 30_000}
    r = client.post("/auth/login", json=body)
    assert r.status_code == 400 and len(r.json["error"]["details"]) == MAX_PROBLEMS
    assert "zz.0" in r.json["error"]["details"] and len(r.get_data()) < 10_000
    r = api.post(
        "/ingest", json={"lead_id": "a", "event_type": "x", "metadata": {f"k{i}": "\u0000" for i in range(30_000)}}
    )
    assert r.status_code == 400 and len(r.json["error"]["details"]) == MAX_PROBLEMS
    assert counts(app) == (0, 0, 0)


def test_event_times_are_bounded_to_1970_and_a_day_ahead(api):
    from datetime import UTC, datetime, timedelta

    ahead = datetime.now(UTC)
    for ts in (
        "0001-01-02T00:00:00Z",
        "9999-12-30T00:00:00Z",
        "1969-12-31T23:59:59Z",
        (ahead + timedelta(days=2)).isoformat(),
    ):
        r = api.post("/ingest", json={"lead_id": "a", "event_type": "x", "timestamp": ts})
        assert r.status_code == 400 and "timestamp" in r.json["error"]["details"], (ts, r.json)
        r = api.post("/ingest/batch", json={"events": [{"lead_id": "a", "event_type": "x", "timestamp": ts}]})
        assert r.status_code == 400 and "events.0.timestamp" in r.json["error"]["details"], (ts, r.json)
    for ts in ("1970-01-01T00:00:00Z", (ahead + timedelta(hours=1)).isoformat()):
        assert api.post("/ingest", json={"lead_id": "a", "event_type": "x", "timestamp": ts}).status_code == 202, ts


def test_loose_booleans_and_integers_are_refused_by_name(api):
    """marshmallow would read "yes", 1 or "on" as true and "1_0", "+5" or "٣" as numbers: every schema refuses them,
    in a body or in a query, and a refused settings change writes (and rescores) nothing."""
    before = api.get("/settings/scoring").json
    for value in ("yes", "true", "on", 1, 0, "1"):
        r = api.put("/settings/scoring", json={"allow_negative_scores": value})
        assert r.status_code == 400 and "allow_negative_scores" in r.json["error"]["details"], (value, r.json)
    assert api.get("/settings/scoring").json == before
    rs = api.post("/rulesets", json={"name": "Draft"}).json["ruleset_id"]
    for field in ("replace_rules", "as_primary"):
        r = api.post(f"/rulesets/{rs}/rescore-preview", json={field: "yes"})
        assert r.status_code == 400 and field in r.json["error"]["details"], r.json
    assert api.post(f"/rulesets/{rs}/rescore-preview", json={"as_primary": True}).status_code == 200
    assert api.post("/ingest", json={"lead_id": "ada", "event_type": "page_view"}).status_code == 202
    for value in ("1_0", "+5", " 5", "5 ", "\u0663", "0x5", "5.0", ""):
        r = api.get("/lead/ada/score-history", query_string={"days": value})
        assert r.status_code == 400 and "days" in r.json["error"]["details"], (value, r.json)
    assert api.get("/lead/ada/score-history", query_string={"days": "07"}).json["days"] == 7
    assert api.get("/lead/ada/score-explain", query_string={"hours": "-5"}).status_code == 400


def test_an_unknown_query_parameter_is_named_not_ignored(api):
    """A misspelt parameter (ruleset= for ruleset_id=) would silently answer something else: it is a 400 naming it,
    where the operation takes parameters and where it takes none."""
    assert api.post("/ingest", json={"lead_id": "ada", "event_type": "page_view"}).status_code == 202
    for path, query, named in (
        ("/score/ada", {"ruleset": "x"}, {"ruleset"}),
        ("/score-gains", {"range": "last_7d", "ranges": "all"}, {"ranges"}),
        ("/event-stats", {"range": "last_90d"}, {"range"}),  # the last 24 hours, always
        ("/lead/ada/score-explain", {"foo": "1"}, {"foo"}),
        ("/decays", {"pages": "2"}, {"pages"}),
    ):
        r = api.get(path, query_string=query)
        assert r.status_code == 400 and r.json["error"]["code"] == "validation_error", (path, r.json)
        assert set(r.json["error"]["details"]) == named, (path, r.json)
    assert api.get("/score/ada").status_code == 200
