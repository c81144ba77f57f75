"""POST /ingest and /events: identities, idempotency, validation, nothing half-written."""

from sqlalchemy import func, select

from models.events import Event
from models.leads import Lead, LeadAlias
from tests.helpers import ingest, leads_by_id, published_ruleset


def counts(app):
    with app.extensions["leadpulse"].Session() as s:
        return (
            s.execute(select(func.count()).select_from(Event)).scalar(),
            s.execute(select(func.count()).select_from(Lead)).scalar(),
            s.execute(select(func.count()).select_from(LeadAlias)).scalar(),
        )


def aliases_of(app, lead_id):
    with app.extensions["leadpulse"].Session() as s:
        return set(
            s.execute(
                select(LeadAlias.kind, LeadAlias.value)
                .join(Lead, Lead.pk == LeadAlias.lead_pk)
                .where(Lead.lead_id == lead_id)
            ).all()
        )


def test_ingest_accepts_and_commits_before_202(api, app):
    r = api.post(
        "/ingest",
        json={
            "lead_id": "ld_123",
            "event_type": "page_view",
            "timestamp": "2025-08-15T12:00:00Z",
            "metadata": {"url": "/pricing", "channel": "web"},
        },
    )
    assert r.status_code == 202
    assert r.json["message"] == "event ingested"
    assert r.json["metadata"] == {"url": "/pricing", "channel": "web"}
    assert r.json["duplicate"] is False and r.json["lead_id"] == "ld_123"
    with app.extensions["leadpulse"].Session() as s:
        event = s.get(Event, int(r.json["id"]))
        assert event.event_type == "page_view" and event.status == 0
        assert event.occurred_at.isoformat() == "2025-08-15T12:00:00+00:00"
        assert event.metadata_ == {"url": "/pricing", "channel": "web"}


def test_events_alias_path_and_default_timestamp(api, app):
    r = api.post("/events", json={"lead_id": "x", "event_type": "email_open"})
    assert r.status_code == 202
    with app.extensions["leadpulse"].Session() as s:
        event = s.get(Event, int(r.json["id"]))
        assert event.occurred_at is not None and event.occurred_at.tzinfo is not None


def test_aliases_create_then_find_lead_normalized(api, app):
    r1 = api.post(
        "/ingest",
        json={"aliases": [{"alias_kind": "email", "raw_value": "  Ada@Example.COM "}], "event_type": "page_view"},
    )
    assert r1.status_code == 202
    lead_id = r1.json["lead_id"]
    assert lead_id.startswith("ld_")
    r2 = api.post(
        "/ingest",
        json={"aliases": [{"alias_kind": "email", "raw_value": "ada@example.com"}], "event_type": "page_view"},
    )
    assert r2.json["lead_id"] == lead_id
    # deprecated top-level form finds the same lead
    r3 = api.post("/ingest", json={"alias_kind": "email", "alias": "ADA@example.com", "event_type": "page_view"})
    assert r3.json["lead_id"] == lead_id
    # a known alias plus a new one: the new one is attached to the same lead
    r4 = api.post(
        "/ingest",
        json={
            "aliases": [
                {"alias_kind": "cookie", "raw_value": "c-1"},
                {"alias_kind": "email", "raw_value": "ada@example.com"},
            ],
            "event_type": "page_view",
        },
    )
    assert r4.json["lead_id"] == lead_id
    assert aliases_of(app, lead_id) == {("email", "ada@example.com"), ("cookie", "c-1")}
    assert counts(app)[1] == 1


def test_lead_id_and_aliases_attach_aliases_to_that_lead(api, app):
    r = api.post(
        "/ingest",
        json={
            "lead_id": "crm-42",
            "aliases": [
                {"alias_kind": "email", "raw_value": "Bob@x.io"},
                {"alias_kind": "phone", "raw_value": "+1 (555) 010-2000"},
            ],
            "event_type": "form_submit",
        },
    )
    assert r.status_code == 202 and r.json["lead_id"] == "crm-42"
    assert aliases_of(app, "crm-42") == {("email", "bob@x.io"), ("phone", "+15550102000")}
    r = api.post(
        "/ingest",
        json={"aliases": [{"alias_kind": "phone", "raw_value": "+1 555 010 2000"}], "event_type": "page_view"},
    )
    assert r.json["lead_id"] == "crm-42"


def test_alias_owned_by_another_lead_is_not_stolen(api, app):
    ingest(api, "a", "page_view", aliases=[{"alias_kind": "email", "raw_value": "shared@x.io"}])
    ingest(api, "b", "page_view", aliases=[{"alias_kind": "email", "raw_value": "shared@x.io"}])
    assert aliases_of(app, "a") == {("email", "shared@x.io")}
    assert aliases_of(app, "b") == set()


def test_idempotency_key_body_and_header_score_once(api, app, run_worker):
    published_ruleset(api, {"demo_request": 30})
    first = api.post("/ingest", json={"lead_id": "l1", "event_type": "demo_request", "event_id": "evt-1"})
    again = api.post("/ingest", json={"lead_id": "l1", "event_type": "demo_request", "event_id": "evt-1"})
    assert first.status_code == again.status_code == 202
    assert first.json["duplicate"] is False and again.json["duplicate"] is True
    assert first.json["event_id"] == again.json["event_id"] == "evt-1" and again.json["id"] == first.json["id"]
    via_header = api.post(
        "/ingest", json={"lead_id": "l1", "event_type": "demo_request"}, headers={"Idempotency-Key": "evt-1"}
    )
    assert via_header.json["duplicate"] is True
    run_worker()
    again_after = api.post("/ingest", json={"lead_id": "l1", "event_type": "demo_request", "event_id": "evt-1"})
    assert again_after.json["duplicate"] is True
    run_worker()
    assert leads_by_id(api)["l1"]["score"] == 30
    assert counts(app)[0] == 1


def test_the_202_names_the_clients_key_as_event_id_and_the_stored_event_as_id(api):
    by_body = api.post("/ingest", json={"lead_id": "l1", "event_type": "x", "event_id": "evt-1"})
    by_header = api.post("/ingest", json={"lead_id": "l1", "event_type": "x"}, headers={"Idempotency-Key": "hdr-1"})
    both = api.post(
        "/ingest", json={"lead_id": "l1", "event_type": "x", "event_id": "k"}, headers={"Idempotency-Key": "k"}
    )
    keyless = api.post("/ingest", json={"lead_id": "l1", "event_type": "x"})
    assert [r.json["event_id"] for r in (by_body, by_header, both, keyless)] == ["evt-1", "hdr-1", "k", None]
    listed = {e["id"] for e in api.get("/events", query_string={"lead_id": "l1", "page": 1}).json["events"]}
    assert {r.json["id"] for r in (by_body, by_header, both, keyless)} == listed and len(listed) == 4
    repeat = api.post("/ingest", json={"lead_id": "l1", "event_type": "x"}, headers={"Idempotency-Key": "evt-1"})
    assert (repeat.json["duplicate"], repeat.json["event_id"], repeat.json["id"]) == (True, "evt-1", by_body.json["id"])
    refused = api.post(
        "/ingest", json={"lead_id": "l1", "event_type": "x", "event_id": "a"}, headers={"Idempotency-Key": "b"}
    )
    assert refused.status_code == 400 and "event_id" in refused.json["error"]["details"]


def test_same_key_in_another_ou_is_a_different_event(client, tenant, other_tenant):
    from tests.conftest import Api

    for t in (tenant, other_tenant):
        r = Api(client, t).post("/ingest", json={"lead_id": "l1", "event_type": "x", "event_id": "k"})
        assert r.status_code == 202 and r.json["duplicate"] is False


def test_metadata_over_100kb_is_413_and_nothing_written(api, app):
    r = api.post("/ingest", json={"lead_id": "big", "event_type": "x", "metadata": {"blob": "a" * (100 * 1024)}})
    assert r.status_code == 413
    assert r.json["error"]["code"] == "payload_too_large" and "metadata" in r.json["error"]["details"]
    r = api.post("/ingest", json={"lead_id": "big", "event_type": "x", "metadata": {"blob": "a" * (99 * 1024)}})
    assert r.status_code == 202
    r = api.post(
        "/ingest",
        data=b'{"lead_id": "x", "event_type": "y", "metadata": {"a": "' + b"b" * (3 * 1024 * 1024) + b'"}}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 413
    assert counts(app)[:2] == (1, 1)


def test_bad_input_names_the_field_and_writes_nothing(api, app):
    cases = [
        ({"lead_id": "x"}, "event_type"),
        ({"event_type": "page_view"}, "lead_id"),
        ({"lead_id": "x", "event_type": ""}, "event_type"),
        ({"lead_id": "x", "event_type": 42}, "event_type"),
        ({"lead_id": 7, "event_type": "a"}, "lead_id"),
        ({"lead_id": "x", "event_type": "DECAY"}, "event_type"),
        ({"lead_id": "x", "event_type": "a", "event_id": "decay:r1:7:86400"}, "event_id"),
        ({"lead_id": "x", "event_type": "bad\ntype"}, "event_type"),
        ({"lead_id": "x", "event_type": "a" * 101}, "event_type"),
        ({"lead_id": "x", "event_type": "a", "timestamp": "last tuesday"}, "timestamp"),
        ({"lead_id": "x", "event_type": "a", "timestamp": 1700000000}, "timestamp"),
        ({"lead_id": "x", "event_type": "a", "metadata": ["not", "an", "object"]}, "metadata"),
        ({"lead_id": "x", "event_type": "a", "metadata": "str"}, "metadata"),
        ({"lead_id": "x", "event_type": "a", "unit_id": "u"}, "unit_id"),
        ({"lead_id": "x", "event_type": "a", "surprise": 1}, "surprise"),
        ({"aliases": [{"alias_kind": "fax", "raw_value": "1"}], "event_type": "a"}, "aliases.0.alias_kind"),
        ({"aliases": [{"alias_kind": "email"}], "event_type": "a"}, "aliases.0.raw_value"),
        ({"aliases": [{"alias_kind": "email", "raw_value": "   "}], "event_type": "a"}, "aliases"),
        ({"aliases": "ada@x.io", "event_type": "a"}, "aliases"),
        ({"aliases": [], "event_type": "a"}, "lead_id"),
        ({"alias": "ada@x.io", "event_type": "a"}, "alias_kind"),
        ({"alias_kind": "email", "event_type": "a"}, "alias"),
        ({"lead_id": "x", "event_type": "a", "event_id": ""}, "event_id"),
        ({"lead_id": "x", "event_type": "a", "event_id": "k1"}, "event_id"),  # disagrees with header below
    ]
    for body, field in cases:
        headers = {"Idempotency-Key": "k2"} if body.get("event_id") == "k1" else {}
        r = api.post("/ingest", json=body, headers=headers)
        assert r.status_code == 400, (body, r.json)
        assert field in r.json["error"]["details"], (body, r.json)
        assert field.split(".")[0] in r.json["error"]["message"], (body, r.json)
    r = api.post("/ingest", json={"lead_id": "x", "event_type": "a"}, headers={"Idempotency-Key": "decay:r1:7"})
    assert r.status_code == 400 and "Idempotency-Key" in r.json["error"]["details"], r.json
    assert counts(app) == (0, 0, 0)


def test_malformed_json_wrong_content_type_and_non_object(api, app):
    r = api.post("/ingest", data="{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and r.json["error"]["code"] == "malformed_json"
    r = api.post(
        "/ingest", data="lead_id=x&event_type=y", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 415 and r.json["error"]["code"] == "unsupported_media_type"
    r = api.post("/ingest", data='{"lead_id":"x","event_type":"y"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = api.post("/ingest", json=[{"lead_id": "x", "event_type": "y"}])
    assert r.status_code == 400 and "body" in r.json["error"]["details"]
    r = api.post("/ingest")
    assert r.status_code == 400
    assert counts(app) == (0, 0, 0)


def test_nul_characters_are_refused_not_a_500(api, app):
    for body, field in [
        ({"lead_id": "a\u0000b", "event_type": "x"}, "lead_id"),
        ({"lead_id": "a", "event_type": "x", "metadata": {"k": "v\u0000"}}, "metadata.k"),
        ({"lead_id": "a", "event_type": "x", "metadata": {"list": ["ok", "bad\u0000"]}}, "metadata.list.1"),
        ({"aliases": [{"alias_kind": "email", "raw_value": "\u0000@x.io"}], "event_type": "x"}, "aliases.0.raw_value"),
    ]:
        r = api.post("/ingest", json=body)
        assert r.status_code == 400 and field in r.json["error"]["details"], (body, r.json)
    assert api.get("/lead/a%00b").status_code == 404
    assert api.get("/leads?level=a%00").status_code == 400
    assert api.get("/leads?page=100000000000000000000").status_code == 400
    assert counts(app) == (0, 0, 0)
