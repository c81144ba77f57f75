"""POST /webhooks/segment with Segment's documented payloads: track, page, identify and batch; messageId dedupes.
Segment's own Python library, pointed at a live server, delivers there (plain and gzipped)."""

import base64
import gzip
import json
import tracemalloc
import zlib

import pytest
from segment import analytics
from segment.analytics.request import APIError

from tests.auth_helpers import member_client
from tests.helpers import create_levels, leads_by_id, metric, published_ruleset, serving, settle

# From Segment's spec docs (track, page, identify examples), ids aligned so they describe one person.
TRACK = {
    "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
    "context": {
        "library": {"name": "analytics.js", "version": "2.11.1"},
        "ip": "108.0.78.21",
        "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_10_5)",
    },
    "event": "Course Clicked",
    "integrations": {},
    "messageId": "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
    "properties": {"title": "Intro to Analytics"},
    "receivedAt": "2015-12-12T19:11:01.266Z",
    "sentAt": "2015-12-12T19:11:01.169Z",
    "timestamp": "2015-12-12T19:11:01.249Z",
    "type": "track",
    "userId": "AiUGstSDIg",
    "originalTimestamp": "2015-12-12T19:11:01.152Z",
}
PAGE = {
    "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
    "channel": "browser",
    "context": {"ip": "8.8.8.8"},
    "integrations": {"All": True},
    "messageId": "ajs-page-1",
    "name": "Home",
    "properties": {"title": "Welcome | Initech", "url": "http://www.example.com"},
    "receivedAt": "2015-02-23T22:28:55.387Z",
    "sentAt": "2015-02-23T22:28:55.111Z",
    "timestamp": "2015-02-23T22:28:55.111Z",
    "type": "page",
    "userId": "AiUGstSDIg",
    "version": "1.1",
}
IDENTIFY = {
    "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
    "channel": "browser",
    "context": {"ip": "8.8.8.8"},
    "integrations": {"All": False, "Mixpanel": True},
    "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
    "receivedAt": "2015-02-23T22:28:55.387Z",
    "sentAt": "2015-02-23T22:28:55.111Z",
    "timestamp": "2015-02-23T22:28:55.111Z",
    "traits": {
        "name": "Peter Gibbons",
        "email": "Peter@Example.com",
        "plan": "premium",
        "logins": 5,
        "address": {
            "street": "6th St",
            "city": "San Francisco",
            "state": "CA",
            "postalCode": "94103",
            "country": "USA",
        },
    },
    "type": "identify",
    "userId": "AiUGstSDIg",
    "version": "1.1",
}


@pytest.fixture
def segment(client, tenant):
    r = client.post(
        "/webhooks/sources", json={"name": "Segment", "kind": "segment"}, headers=member_client(client, tenant)
    )
    assert r.status_code == 201, r.json
    key = r.json["write_key"]
    return r.json, {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def test_track_page_and_identify_describe_one_lead(client, segment, api, app, run_worker):
    src, auth = segment
    assert src["url"] == "/webhooks/segment" and src["write_key"].startswith("wk_") and "secret" not in src
    assert "write_key" not in client.get(f"/webhooks/sources/{src['id']}", headers=api.tenant.auth).json
    create_levels(api)
    published_ruleset(api, {"Course Clicked": 20, "page_view": 5})
    r = client.post("/webhooks/segment", json=TRACK, headers=auth)
    assert r.status_code == 200 and r.json["success"] is True and r.json["results"][0]["status"] == "accepted", r.json
    lead_id = r.json["results"][0]["lead_id"]
    again = client.post("/webhooks/segment", json=TRACK, headers=auth)
    assert (
        again.json["results"][0]["status"] == "duplicate"
        and again.json["results"][0]["id"] == r.json["results"][0]["id"]
    )
    assert again.json["results"][0]["event_id"] == r.json["results"][0]["event_id"] == f"segment:{TRACK['messageId']}"
    page = client.post("/webhooks/segment", json=PAGE, headers=auth).json["results"][0]
    assert page["status"] == "accepted" and page["lead_id"] == lead_id
    ident = client.post("/webhooks/segment", json=IDENTIFY, headers=auth).json["results"][0]
    assert ident == {"index": 0, "status": "identified", "lead_id": lead_id}
    settle(app, run_worker)
    lead = api.get(f"/lead/{lead_id}").json["lead"]
    assert lead["metadata"]["name"] == "Peter Gibbons" and lead["metadata"]["plan"] == "premium"
    assert leads_by_id(api)[lead_id]["score"] == 25
    # traits.email became an alias: an event by email alone lands on the same lead
    r = api.post(
        "/ingest",
        json={"aliases": [{"alias_kind": "email", "raw_value": "peter@example.com"}], "event_type": "page_view"},
    )
    assert r.json["lead_id"] == lead_id
    # null removes a trait
    client.post("/webhooks/segment", json={**IDENTIFY, "messageId": "m2", "traits": {"plan": None}}, headers=auth)
    assert "plan" not in api.get(f"/lead/{lead_id}").json["lead"]["metadata"]


def test_batch_reports_each_message(client, segment, api):
    _, auth = segment
    batch = {
        "batch": [
            TRACK,
            {**TRACK, "messageId": "m-bad", "event": None},
            {"type": "screen", "name": "Home", "userId": "AiUGstSDIg", "messageId": "m-screen"},
            {**PAGE, "messageId": "m-page-2"},
            {**TRACK, "messageId": "m-nobody", "userId": None, "anonymousId": None},
            "not a message",
        ],
        "sentAt": "2015-12-12T19:11:01.169Z",
    }
    r = client.post("/webhooks/segment", json=batch, headers=auth)
    assert r.status_code == 200, r.json
    assert [x["status"] for x in r.json["results"]] == [
        "accepted",
        "rejected",
        "ignored",
        "accepted",
        "rejected",
        "rejected",
    ]
    assert "event_type" in r.json["results"][1]["error"]["details"]
    assert "lead_id" in r.json["results"][4]["error"]["details"]


def test_bad_write_keys_and_bodies_are_refused_and_counted(client, segment, api):
    _, auth = segment
    unknown = 'webhook_deliveries_rejected_total{reason="unknown_source",source="segment"}'
    before = metric(client, unknown)
    wrong = {"Authorization": "Basic " + base64.b64encode(b"wk_nope:").decode()}
    for headers, status, code in [
        ({}, 401, "missing_write_key"),
        (wrong, 401, "unknown_source"),
        (api.tenant.auth, 401, "unknown_source"),
    ]:
        r = client.post("/webhooks/segment", json=TRACK, headers=headers)
        assert r.status_code == status and r.json["error"]["code"] == code
    r = client.post("/webhooks/segment", data="{nope", headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json["error"]["code"] == "malformed_json"
    r = client.post("/webhooks/segment", json={**TRACK, "event": "bad/name"}, headers=auth)
    assert r.status_code == 400 and "event_type" in r.json["error"]["details"]
    assert client.post("/webhooks/segment", json={"batch": []}, headers=auth).status_code == 400
    r = client.post(
        "/webhooks/segment",
        json={**TRACK, "context": "not an object", "userId": None, "anonymousId": None},
        headers=auth,
    )
    assert r.status_code == 400 and "lead_id" in r.json["error"]["details"]  # no identity left: refused, not a 500
    r = client.post("/webhooks/segment", json={**IDENTIFY, "traits": {"name": "nul\u0000byte"}}, headers=auth)
    assert r.status_code == 400 and "traits.name" in r.json["error"]["details"]
    assert leads_by_id(api) == {}
    assert metric(client, unknown) == before + 2
    r = client.post(
        "/webhooks/sources", json={"name": "x", "kind": "zapier"}, headers=member_client(client, api.tenant)
    )
    assert r.status_code == 400 and "kind" in r.json["error"]["details"]
    src_id = client.get("/webhooks/sources", headers=api.tenant.auth).json[0]["id"]
    r = client.put(f"/webhooks/sources/{src_id}", json={"kind": "standard"}, headers=member_client(client, api.tenant))
    assert r.status_code == 400 and "kind" in r.json["error"]["details"]  # a source's kind never changes


def test_traits_cannot_grow_a_lead_past_the_metadata_limit(client, segment, api):
    """Each identify is under the limit; the merged metadata would not be: refused (413), the lead unchanged."""
    _, auth = segment
    chunk = "x" * (40 * 1024)
    for n, key in enumerate(["a", "b"]):
        r = client.post(
            "/webhooks/segment", json={**IDENTIFY, "messageId": f"m{n}", "traits": {key: chunk}}, headers=auth
        )
        assert r.status_code == 200 and r.json["results"][0]["status"] == "identified"
    r = client.post("/webhooks/segment", json={**IDENTIFY, "messageId": "m2", "traits": {"c": chunk}}, headers=auth)
    assert (
        r.status_code == 413
        and r.json["error"]["code"] == "payload_too_large"
        and "traits" in r.json["error"]["details"]
    )
    [lead] = leads_by_id(api).values()
    assert sorted(api.get(f"/lead/{lead['lead_id']}").json["lead"]["metadata"]) == ["a", "b"]
    r = client.post(
        "/webhooks/segment",
        json={"batch": [{**TRACK, "messageId": "t1"}, {**IDENTIFY, "messageId": "m3", "traits": {"d": chunk}}]},
        headers=auth,
    )
    assert [x["status"] for x in r.json["results"]] == ["accepted", "rejected"]  # in a batch, only that message
    assert r.json["results"][1]["error"]["code"] == "payload_too_large"


def test_identifies_of_a_batch_apply_in_order(client, segment, api):
    """Many identify messages are applied together, yet as if one at a time: later traits win, null removes."""
    _, auth = segment
    ident = lambda n, uid, traits: {
        **IDENTIFY,
        "messageId": f"i{n}",
        "userId": uid,
        "anonymousId": f"anon-{uid}",
        "traits": traits,
    }
    r = client.post(
        "/webhooks/segment",
        headers=auth,
        json={
            "batch": [
                ident(1, "u1", {"plan": "free", "seats": 3}),
                ident(2, "u2", {"plan": "team"}),
                ident(3, "u1", {"plan": "pro", "seats": None}),
                {**TRACK, "messageId": "t9", "userId": "u1", "anonymousId": "anon-u1"},
            ]
        },
    )
    assert r.status_code == 200
    results = r.json["results"]
    assert [x["status"] for x in results] == ["identified", "identified", "identified", "accepted"]
    assert results[0]["lead_id"] == results[2]["lead_id"] == results[3]["lead_id"] != results[1]["lead_id"]
    u1 = api.get(f"/lead/{results[0]['lead_id']}").json["lead"]["metadata"]
    assert u1["plan"] == "pro" and "seats" not in u1
    assert api.get(f"/lead/{results[1]['lead_id']}").json["lead"]["metadata"]["plan"] == "team"


def test_segments_python_library_delivers_with_only_host_set(app, segment, api, run_worker):
    """segment-analytics-python posts to {host}/v1/batch: one client plain and blocking, one gzipped, queued and flushed."""
    src, _ = segment
    create_levels(api)
    published_ruleset(api, {"Course Clicked": 20, "page_view": 5})
    failures = []
    with serving(app) as url:
        plain = analytics.Client(src["write_key"], host=f"{url}/webhooks/segment", sync_mode=True)
        gzipped = analytics.Client(
            src["write_key"],
            host=f"{url}/webhooks/segment/",
            gzip=True,
            max_retries=0,
            on_error=lambda exc, batch: failures.append(exc),
        )
        for client, user in ((plain, "u-plain"), (gzipped, "u-gzip")):
            client.track(user, "Course Clicked", {"title": "Intro to Analytics"}, message_id=f"{user}-track")
            client.page(user, "Docs", "Home", {"url": "https://www.example.com"}, message_id=f"{user}-page")
            client.identify(user, {"email": f"{user}@example.com", "plan": "pro"}, message_id=f"{user}-identify")
        gzipped.shutdown()  # flushes the queue: one gzipped /v1/batch of three messages
        assert failures == []
        with pytest.raises(APIError) as refused:  # a wrong write key: refused, and the library does not retry a 401
            analytics.Client("wk_wrong", host=f"{url}/webhooks/segment", sync_mode=True).track(
                "u-plain", "Course Clicked"
            )
    assert refused.value.status == 401
    settle(app, run_worker)
    leads = {
        api.get(f"/lead/{lead_id}").json["lead"]["metadata"].get("email"): lead
        for lead_id, lead in leads_by_id(api).items()
    }
    assert sorted(leads) == ["u-gzip@example.com", "u-plain@example.com"]
    assert [lead["score"] for lead in leads.values()] == [25, 25]  # track 20 + page 5, once each
    assert api.get(f"/lead/{leads['u-gzip@example.com']['lead_id']}").json["lead"]["metadata"]["plan"] == "pro"


def test_single_call_paths_imply_the_message_type(client, segment, api, app, run_worker):
    _, auth = segment
    create_levels(api)
    published_ruleset(api, {"Course Clicked": 20, "page_view": 5})
    untyped = lambda msg: {k: v for k, v in msg.items() if k != "type"}
    r = client.post("/webhooks/segment/v1/track", json=untyped(TRACK), headers=auth)
    assert r.status_code == 200 and r.json["results"][0]["status"] == "accepted", r.json
    lead_id = r.json["results"][0]["lead_id"]
    assert (
        client.post("/webhooks/segment/v1/page", json=untyped(PAGE), headers=auth).json["results"][0]["lead_id"]
        == lead_id
    )
    assert client.post("/webhooks/segment/v1/identify", json=untyped(IDENTIFY), headers=auth).json["results"][0] == {
        "index": 0,
        "status": "identified",
        "lead_id": lead_id,
    }
    assert (
        client.post("/webhooks/segment/v1/track", json=TRACK, headers=auth).json["results"][0]["status"] == "duplicate"
    )
    r = client.post("/webhooks/segment/v1/batch", json={"batch": [{**PAGE, "messageId": "p2"}]}, headers=auth)
    assert r.json["results"][0]["status"] == "accepted"
    r = client.post("/webhooks/segment/v1/track", json=PAGE, headers=auth)  # the path says track, the body says page
    assert r.status_code == 400 and "type" in r.json["error"]["details"]
    r = client.post("/webhooks/segment/v1/batch", json=TRACK, headers=auth)  # /v1/batch takes a batch, not one message
    assert r.status_code == 400 and "batch" in r.json["error"]["details"]
    for path in ("/webhooks/segment/v1/screen", "/webhooks/segment/v1/", "/v1/batch", "/v1/track"):
        assert client.post(path, json=TRACK, headers=auth).status_code == 404, path
    settle(app, run_worker)
    assert leads_by_id(api)[lead_id]["score"] == 30
    assert api.get(f"/lead/{lead_id}").json["lead"]["metadata"]["plan"] == "premium"


def test_write_key_in_the_body(client, segment, api):
    """writeKey in the body names the source alone; beside a Basic user it must be that same key."""
    src, auth = segment
    key = src["write_key"]
    batch = lambda n, **extra: {"batch": [{**TRACK, "messageId": f"m{n}"}], **extra}
    r = client.post("/webhooks/segment/v1/batch", json=batch(1, writeKey=key))
    assert r.status_code == 200 and r.json["results"][0]["status"] == "accepted", r.json
    assert (
        client.post("/webhooks/segment/v1/batch", json=batch(2, writeKey=key), headers=auth).json["results"][0][
            "status"
        ]
        == "accepted"
    )
    wrong_basic = {"Authorization": "Basic " + base64.b64encode(b"wk_nope:").decode()}
    other_key = key[:-1] + ("x" if key[-1] != "x" else "y")  # one character off, never the key itself
    for n, body, headers, status, code, field in [
        (3, batch(3, writeKey="wk_nope"), {}, 401, "unknown_source", None),
        (4, batch(4, writeKey=other_key), auth, 401, "unknown_source", "writeKey"),
        (5, batch(5, writeKey=key), wrong_basic, 401, "unknown_source", None),
        (6, batch(6, writeKey="wk_\ud800"), {}, 401, "unknown_source", "writeKey"),
        (7, batch(7, writeKey=5), {}, 400, "validation_error", "writeKey"),
        (8, batch(8, writeKey=""), {}, 401, "missing_write_key", None),
        (9, batch(9), {}, 401, "missing_write_key", None),
    ]:
        r = client.post("/webhooks/segment/v1/batch", json=body, headers=headers)
        assert (r.status_code, r.json["error"]["code"]) == (status, code), (n, r.json)
        assert field is None or field in r.json["error"]["details"], (n, r.json)
    [lead] = leads_by_id(api).values()
    assert len(api.get(f"/events/{lead['lead_id']}").json) == 2


def test_gzip_bodies_are_inflated_within_the_body_limit(client, segment, app):
    _, auth = segment
    limit = app.config["MAX_CONTENT_LENGTH"]
    counted = {reason: rejected(client, reason) for reason in ("malformed_gzip", "payload_too_large")}

    def post(body: bytes, encoding="gzip"):
        return client.post(
            "/webhooks/segment/v1/batch",
            data=body,
            headers={**auth, "Content-Type": "application/json", "Content-Encoding": encoding},
        )

    body = json.dumps({"batch": [TRACK]}).encode()
    r = post(gzip.compress(body[:9]) + gzip.compress(body[9:]))  # concatenated members are one gzip stream
    assert r.status_code == 200 and r.json["results"][0]["status"] == "accepted", r.json
    padded = body + b" " * (limit - len(body))  # inflates to the limit exactly: accepted, one byte more is not
    assert post(gzip.compress(padded)).json["results"][0]["status"] == "duplicate"
    for too_big in (gzip.compress(padded + b" "), gzip.compress(padded) + gzip.compress(b" ")):
        r = post(too_big)
        assert (
            r.status_code == 413
            and r.json["error"]["code"] == "payload_too_large"
            and "body" in r.json["error"]["details"]
        )
    deflate = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 64 MB of spaces, never held whole here
    spaces = b" " * (1 << 20)
    bomb = (
        deflate.compress(b'{"batch": [')
        + b"".join(deflate.compress(spaces) for _ in range(64))
        + deflate.compress(b"]}")
        + deflate.flush()
    )
    assert len(bomb) < limit // 8
    tracemalloc.start()
    try:
        r = post(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert r.status_code == 413 and r.json["error"]["code"] == "payload_too_large"
    assert peak < 4 * limit  # inflated a bounded step at a time, never the 64 MB
    good = gzip.compress(body)
    for corrupt in (good[:20] + bytes([good[20] ^ 0xFF]) + good[21:], good[:-8], good + b"trailing junk", body, b""):
        r = post(corrupt)
        assert (
            r.status_code == 400
            and r.json["error"]["code"] == "malformed_gzip"
            and "body" in r.json["error"]["details"]
        ), r.json
    for encoding in ("br", "deflate", "gzip, br", "compress"):
        r = post(good, encoding)
        assert r.status_code == 415 and "Content-Encoding" in r.json["error"]["details"], r.json
    assert post(body, "identity").status_code == 200
    many = gzip.compress(b"") * 50_000  # 1 MB of empty members: each would cost an inflater and a copy of the rest
    r = post(many)
    assert (
        r.status_code == 400 and r.json["error"]["code"] == "malformed_gzip" and "members" in r.json["error"]["message"]
    )
    assert {reason: rejected(client, reason) - n for reason, n in counted.items()} == {
        "malformed_gzip": 6,
        "payload_too_large": 3,
    }


def rejected(client, reason: str) -> float:
    """webhook_deliveries_rejected_total for Segment and this reason (counters live as long as the process: compare)."""
    line = f'webhook_deliveries_rejected_total{{reason="{reason}",source="segment"}} '
    found = [x for x in client.get("/metrics").get_data(as_text=True).splitlines() if x.startswith(line)]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0
