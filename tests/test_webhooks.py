"""Signed webhook sources (Standard Webhooks): signature, timestamp tolerance, replay, key rotation, errors counted."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from tests.auth_helpers import member_client
from tests.conftest import Api
from tests.helpers import create_levels, leads_by_id, metric, published_ruleset, settle


@pytest.fixture
def source(client, tenant):
    headers = member_client(client, tenant)
    r = client.post("/webhooks/sources", json={"name": "Site tracker"}, headers=headers)
    assert r.status_code == 201, r.json
    return r.json, headers


def signed(
    secret: str, body: dict | str, msg_id: str = "msg_1", at: datetime | None = None, extra_sigs: str = ""
) -> tuple[str, dict]:
    data = body if isinstance(body, str) else json.dumps(body)
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(msg_id, at, data)
    return data, {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": f"{extra_sigs} {signature}".strip(),
        "Content-Type": "application/json",
    }


def deliver(client, src, data, headers):
    return client.post(src["url"], data=data, headers=headers)


def test_source_secret_is_shown_once_and_sources_are_scoped(client, app, source, api, other_tenant):
    src, headers = source
    assert src["secret"].startswith("whsec_") and src["url"] == f"/webhooks/events/{src['id']}"
    got = client.get(f"/webhooks/sources/{src['id']}", headers=headers).json
    assert "secret" not in got and got["name"] == "Site tracker"
    assert [s["id"] for s in client.get("/webhooks/sources", headers=headers).json] == [src["id"]]
    assert Api(client, other_tenant).get(f"/webhooks/sources/{src['id']}").status_code == 404
    theirs = app.test_client()
    their_member = member_client(theirs, other_tenant)
    assert theirs.delete(f"/webhooks/sources/{src['id']}", headers=their_member).status_code == 404
    assert theirs.put(f"/webhooks/sources/{src['id']}", json={"name": "x"}, headers=their_member).status_code == 404
    assert api.post("/webhooks/sources", json={"name": "by credential"}).status_code == 403
    dup = client.post("/webhooks/sources", json={"name": "Site tracker"}, headers=headers)
    assert dup.status_code == 409 and "name" in dup.json["error"]["details"]
    assert client.post("/webhooks/sources", json={"name": ""}, headers=headers).status_code == 400


def test_a_signed_event_is_ingested_once_whatever_the_replays(client, source, api, app, run_worker):
    src, _ = source
    create_levels(api)
    published_ruleset(api, {"demo_request": 30})
    data, headers = signed(src["secret"], {"lead_id": "ada", "event_type": "demo_request"})
    r = deliver(client, src, data, headers)
    assert r.status_code == 202 and r.json["duplicate"] is False, r.json
    again = deliver(client, src, data, headers)  # a retry by the sender, or a replay inside the tolerance
    assert again.status_code == 202 and again.json["duplicate"] is True and again.json["id"] == r.json["id"]
    assert r.json["event_id"] == again.json["event_id"] == headers["webhook-id"]
    settle(app, run_worker)
    assert leads_by_id(api)["ada"]["score"] == 30


def test_bad_deliveries_say_why_and_are_counted(client, source, api):
    reasons = ("bad_signature", "stale_timestamp", "unknown_source")
    rejected = {why: f'webhook_deliveries_rejected_total{{reason="{why}",source="standard"}}' for why in reasons}
    before = {why: metric(client, sample) for why, sample in rejected.items()}
    src, _ = source
    body = {"lead_id": "ada", "event_type": "page_view"}
    data, headers = signed(src["secret"], body)
    cases = [
        (data.replace("page_view", "demo_request"), headers, 401, "bad_signature"),  # tampered body
        (*signed("whsec_" + "A" * 43 + "=", body), 401, "bad_signature"),  # someone else's secret
        (*signed(src["secret"], body, at=datetime.now(UTC) - timedelta(minutes=6)), 401, "stale_timestamp"),
        (*signed(src["secret"], body, at=datetime.now(UTC) + timedelta(minutes=6)), 401, "stale_timestamp"),
        (data, {**headers, "webhook-signature": "garbage"}, 401, "bad_signature"),
        (data, {**headers, "webhook-signature": "v1,%%%not-base64"}, 401, "bad_signature"),
        (data, {**headers, "webhook-timestamp": "soon"}, 401, "bad_signature"),
        (data, {k: v for k, v in headers.items() if k != "webhook-signature"}, 400, "missing_signature_headers"),
        (*signed(src["secret"], "not json"), 400, "malformed_json"),
        (*signed(src["secret"], "[1, 2]"), 400, "validation_error"),
        (*signed(src["secret"], {"lead_id": "ada"}), 400, "validation_error"),
        (*signed(src["secret"], {**body, "event_id": "other"}), 400, "validation_error"),
    ]
    for d, h, status, code in cases:
        r = deliver(client, src, d, h)
        assert r.status_code == status and r.json["error"]["code"] == code, (d, h, r.json)
    r = client.post("/webhooks/events/00000000-0000-0000-0000-000000000000", data=data, headers=headers)
    assert r.status_code == 404 and r.json["error"]["code"] == "unknown_source"
    assert leads_by_id(api) == {}  # nothing was stored
    counted = {why: metric(client, sample) - before[why] for why, sample in rejected.items()}
    assert counted == {"bad_signature": 5, "stale_timestamp": 2, "unknown_source": 1}


def test_any_of_several_signatures_may_match_for_key_rotation(client, source):
    src, _ = source
    old = Webhook("whsec_" + "B" * 43 + "=").sign("msg_9", datetime.now(UTC), "{}").strip()
    data, headers = signed(src["secret"], {"lead_id": "ada", "event_type": "page_view"}, msg_id="msg_9", extra_sigs=old)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert deliver(client, src, data, headers).status_code == 202


def test_one_id_by_ingest_batch_and_webhook_is_one_event(client, source, api, app, run_worker):
    src, headers = source
    create_levels(api)
    published_ruleset(api, {"demo_request": 30})
    assert (
        api.post("/ingest", json={"lead_id": "ada", "event_type": "demo_request", "event_id": "same-1"}).json[
            "duplicate"
        ]
        is False
    )
    batch = api.post(
        "/ingest/batch", json={"events": [{"lead_id": "ada", "event_type": "demo_request", "event_id": "same-1"}]}
    )
    assert batch.json["duplicate"] == 1
    data, hook_headers = signed(src["secret"], {"lead_id": "ada", "event_type": "demo_request"}, msg_id="same-1")
    assert deliver(client, src, data, hook_headers).json["duplicate"] is True
    settle(app, run_worker)
    assert leads_by_id(api)["ada"]["score"] == 30
    # deleting the source stops its deliveries
    assert client.delete(f"/webhooks/sources/{src['id']}", headers=headers).status_code == 204
    assert deliver(client, src, data, hook_headers).status_code == 404
