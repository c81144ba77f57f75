"""POST /ingest/batch: up to 500 events, per-item results, one transaction, the same guarantees as /ingest."""

from sqlalchemy import func, select

from models.events import Event
from tests.conftest import Api
from tests.helpers import create_levels, leads_by_id, published_ruleset, settle, statements_sent


def stored_events(app):
    with app.extensions["leadpulse"].Session() as s:
        return s.execute(select(func.count()).select_from(Event)).scalar()


def test_each_item_is_accepted_duplicate_or_rejected_on_its_own(api, app, run_worker):
    create_levels(api)
    published_ruleset(api, {"page_view": 5, "demo_request": 30})
    assert (
        api.post("/ingest", json={"lead_id": "ada", "event_type": "demo_request", "event_id": "e-1"}).status_code == 202
    )
    big = {"blob": "x" * (101 * 1024)}
    r = api.post(
        "/ingest/batch",
        json={
            "events": [
                {"lead_id": "ada", "event_type": "demo_request", "event_id": "e-1"},  # sent before by /ingest
                {
                    "aliases": [{"alias_kind": "email", "raw_value": " Bob@X.io "}],
                    "event_type": "page_view",
                    "event_id": "e-2",
                },
                {"lead_id": "ada", "event_type": ""},
                {"lead_id": "ada", "event_type": "page_view", "metadata": big},
                "not an object",
                {"lead_id": "ada", "event_type": "page_view", "colour": "red"},
                {
                    "aliases": [{"alias_kind": "email", "raw_value": "bob@x.io"}],
                    "event_type": "page_view",
                    "event_id": "e-2",
                },  # repeat inside
                {"lead_id": "ada", "event_type": "page_view", "timestamp": "2026-11-01T10:00:00Z"},
            ]
        },
    )
    assert r.status_code == 202, r.json
    body = r.json
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (2, 2, 4)
    statuses = [(x["index"], x["status"]) for x in body["results"]]
    assert statuses == [
        (0, "duplicate"),
        (1, "accepted"),
        (2, "rejected"),
        (3, "rejected"),
        (4, "rejected"),
        (5, "rejected"),
        (6, "duplicate"),
        (7, "accepted"),
    ]
    results = body["results"]
    assert [(x.get("event_id"), "id" in x) for x in results] == [
        ("e-1", True),
        ("e-2", True),
        (None, False),
        (None, False),
        (None, False),
        (None, False),
        ("e-2", True),
        (None, True),
    ]
    assert results[1]["lead_id"] == results[6]["lead_id"] and results[1]["id"] == results[6]["id"]
    assert "event_type" in results[2]["error"]["details"]
    assert results[3]["error"]["code"] == "payload_too_large" and "metadata" in results[3]["error"]["details"]
    assert results[4]["error"]["details"] == {"_schema": ["each event must be a JSON object"]}
    assert "colour" in results[5]["error"]["details"]
    settle(app, run_worker)
    leads = leads_by_id(api)
    assert leads["ada"]["score"] == 35 and leads[results[1]["lead_id"]]["score"] == 5
    assert stored_events(app) == 3  # e-1 once, e-2 once, ada's page_view


def test_unstorable_text_rejects_only_its_own_item(api, app):
    """A NUL or a lone surrogate in one event is that event's problem, not the batch's."""
    r = api.post(
        "/ingest/batch",
        data='{"events": [{"lead_id": "a", "event_type": "x"}, {"lead_id": "b\\u0000", "event_type": "x"},'
        ' {"lead_id": "c", "event_type": "x", "metadata": {"k": "\\ud800"}}, {"lead_id": "d", "event_type": "x"}]}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 202, r.json
    assert [x["status"] for x in r.json["results"]] == ["accepted", "rejected", "rejected", "accepted"]
    assert r.json["results"][1]["error"]["details"] == {"lead_id": ["must not contain NUL characters"]}
    assert r.json["results"][2]["error"]["details"] == {
        "metadata.k": ["must be valid Unicode text (no lone surrogates)"]
    }
    assert stored_events(app) == 2
    r = api.post(
        "/ingest/batch",
        data='{"events": [{"lead_id": "a", "event_type": "x"}], "n\\u0000": 1}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json["error"]["details"] == {
        "n\x00": ["key must not contain NUL characters"]
    }  # outside the items, the body is refused as before


def test_the_batch_is_one_transaction_not_one_per_event(api, app, settings):
    with statements_sent() as statements:
        r = api.post(
            "/ingest/batch", json={"events": [{"lead_id": f"l{i}", "event_type": "page_view"} for i in range(500)]}
        )
    assert r.status_code == 202 and r.json["accepted"] == 500
    assert stored_events(app) == 500
    assert 2 <= len(statements) < 20, statements  # set-based: a handful of statements (auth included), not 500


def test_bad_batches_are_refused_whole_and_store_nothing(api, app):
    for body, field in [
        ({}, "events"),
        ({"events": []}, "events"),
        ({"events": {"lead_id": "a"}}, "events"),
        ({"events": [{"lead_id": "a", "event_type": "x"}] * 501}, "events"),
        ({"events": [], "extra": 1}, "extra"),
    ]:
        r = api.post("/ingest/batch", json=body)
        assert r.status_code == 400 and field in r.json["error"]["details"], (body, r.json)
    r = api.post("/ingest/batch", json={"events": [{"event_type": "page_view"}, {"lead_id": "a"}]})
    assert r.status_code == 400 and r.json["error"]["message"] == "every event in the batch was rejected"
    assert set(r.json["error"]["details"]) == {"events.0.lead_id", "events.1.event_type"}
    assert api.post("/ingest/batch", data="events", headers={"Content-Type": "text/plain"}).status_code == 415
    assert stored_events(app) == 0


def test_batch_needs_credentials_and_stays_in_the_callers_ou(client, api, other_tenant, app):
    assert client.post("/ingest/batch", json={"events": [{"lead_id": "a", "event_type": "x"}]}).status_code == 401
    assert (
        api.post("/ingest/batch", json={"events": [{"lead_id": "a", "event_type": "page_view", "event_id": "k"}]}).json[
            "accepted"
        ]
        == 1
    )
    theirs = Api(client, other_tenant)
    # the same idempotency key in another OU is another event
    assert (
        theirs.post(
            "/ingest/batch", json={"events": [{"lead_id": "a", "event_type": "page_view", "event_id": "k"}]}
        ).json["accepted"]
        == 1
    )
    assert set(leads_by_id(theirs)) == {"a"} and stored_events(app) == 2
