"""Reading events: GET /events with filters, /events/{leadID}, the streamed CSV export, channels, types and keys."""

import csv
import io

from tests.conftest import Api
from tests.helpers import create_levels, ingest, published_ruleset, settle


def seed(api):
    ingest(
        api,
        "ada",
        "page_view",
        metadata={"channel": "web", "utm_campaign": "fall", "path": "/pricing"},
        timestamp="2026-11-20T10:00:00Z",
    )
    ingest(
        api,
        "ada",
        "email_open",
        metadata={"channel": "email", "utm_campaign": "fall"},
        timestamp="2026-11-21T10:00:00Z",
    )
    ingest(
        api, "bob", "page_view", metadata={"channel": "web", "utm_campaign": "spring"}, timestamp="2026-11-19T10:00:00Z"
    )
    ingest(api, "bob", "webinar", metadata={}, timestamp="2026-11-18T10:00:00Z")


def test_list_filters_and_pages(api, app, run_worker, other_tenant, client):
    create_levels(api)
    published_ruleset(api, {"page_view": 5})
    seed(api)
    settle(app, run_worker)
    everything = api.get("/events")
    assert everything.status_code == 200 and everything.headers["X-Total-Count"] == "4"
    assert [e["event_type"] for e in everything.json] == [
        "email_open",
        "page_view",
        "page_view",
        "webinar",
    ]  # newest first
    first = everything.json[1]
    assert (
        first["lead_id"] == "ada"
        and first["channel"] == "web"
        and first["status"] == "scored"
        and first["timestamp"] == "2026-11-20T10:00:00Z"
    )

    def types(**q):
        r = api.get("/events", query_string=q)
        assert r.status_code == 200, r.json
        return [(e["lead_id"], e["event_type"]) for e in r.json]

    assert types(event_type="page_view") == [("ada", "page_view"), ("bob", "page_view")]
    assert types(lead_id="bob") == [("bob", "page_view"), ("bob", "webinar")]
    assert types(metadata="utm_campaign:fall") == [("ada", "email_open"), ("ada", "page_view")]
    assert types(metadata=["utm_campaign:fall", "channel:web"]) == [("ada", "page_view")]
    assert types(metadata=["utm_campaign:spring", "channel:email"], logic="or") == [
        ("ada", "email_open"),
        ("bob", "page_view"),
    ]
    paged = api.get("/events", query_string={"page": 2, "limit": 3}).json
    assert paged["total"] == 4 and [e["event_type"] for e in paged["events"]] == ["webinar"]
    for q, field in [
        ({"metadata": "nocolon"}, "metadata"),
        ({"logic": "xor"}, "logic"),
        ({"limit": 0}, "limit"),
        ({"range": "decade"}, "range"),
    ]:
        r = api.get("/events", query_string=q)
        assert r.status_code == 400 and field in r.json["error"]["details"], (q, r.json)
    assert Api(client, other_tenant).get("/events").json == []  # another OU sees none of them


def test_lead_events_export_channels_types_and_keys(api, client, other_tenant):
    seed(api)
    r = api.get("/events/ada")
    assert r.status_code == 200 and [e["event_type"] for e in r.json] == ["email_open", "page_view"]
    assert api.get("/events/nobody").status_code == 404
    assert Api(client, other_tenant).get("/events/ada").status_code == 404
    export = api.get("/events/export", query_string={"lead_id": "bob"})
    assert export.status_code == 200 and export.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert [(r["lead_id"], r["event_type"], r["timestamp"]) for r in rows] == [
        ("bob", "page_view", "2026-11-19T10:00:00Z"),
        ("bob", "webinar", "2026-11-18T10:00:00Z"),
    ]
    assert api.get("/channels").json == ["email", "web"]
    assert api.get("/event-types").json == ["email_open", "page_view", "webinar"]
    assert api.get("/event-types/page_view/properties").json == {
        "event_type": "page_view",
        "properties": ["channel", "path", "utm_campaign"],
    }
    assert api.get("/event-types/unknown/properties").json == {"event_type": "unknown", "properties": []}
    assert Api(client, other_tenant).get("/channels").json == []


def test_delete_events_rescores_from_what_remains(api, app, run_worker, client, other_tenant):
    create_levels(api)
    published_ruleset(api, {"demo_request": 30, "page_view": 5, "unsubscribe": -40})
    ingest(api, "ada", "demo_request", timestamp="2026-11-20T10:00:00Z")
    unsub = ingest(api, "ada", "unsubscribe", timestamp="2026-11-20T11:00:00Z")["id"]
    ingest(api, "ada", "demo_request", timestamp="2026-11-20T12:00:00Z")
    ingest(api, "ada", "demo_request", timestamp="2026-11-20T13:00:00Z")
    only = ingest(api, "bob", "demo_request", timestamp="2026-11-20T10:00:00Z")["id"]
    theirs = Api(client, other_tenant)
    their_event = ingest(theirs, "cy", "page_view")["id"]
    settle(app, run_worker)
    leads = {lead["lead_id"]: lead for lead in api.get("/leads").json}
    assert leads["ada"]["score"] == 60 and leads["bob"]["level"]["name"] == "Warm"  # 30 - 40 -> 0 (floor), +30, +30
    r = api.delete("/events/batch", json={"ids": [unsub, only, their_event, "nope", unsub]})
    assert r.status_code == 200 and r.json == {"deleted": 2, "not_found": [their_event, "nope"], "leads_rescored": 2}
    settle(app, run_worker)
    leads = {lead["lead_id"]: lead for lead in api.get("/leads").json}
    assert leads["ada"]["score"] == 90 and leads["ada"]["level"]["name"] == "Very Hot"  # the floor no longer bites
    assert leads["bob"]["score"] == 0 and leads["bob"]["level"]["name"] == "Cold"
    assert [e["status"] for e in api.get("/events/ada").json] == ["scored"] * 3
    assert len(theirs.get("/events").json) == 1  # another OU's event is untouched
    assert api.delete("/events/batch", json={"ids": ["²", "١٢", "-1"]}).json == {
        "deleted": 0,
        "not_found": ["²", "١٢", "-1"],
        "leads_rescored": 0,
    }
    for body, field in [({}, "ids"), ({"ids": []}, "ids"), ({"ids": "1"}, "ids"), ({"ids": ["1"] * 501}, "ids")]:
        r = api.delete("/events/batch", json=body)
        assert r.status_code == 400 and field in r.json["error"]["details"], (body, r.json)


def test_lead_activity_with_deltas_and_filters(api, app, run_worker, client, other_tenant):
    create_levels(api)
    published_ruleset(api, {"demo_request": 30, "page_view": 5})
    from models.base import utcnow

    now = utcnow().replace(microsecond=0)
    ingest(
        api,
        "ada",
        "page_view",
        metadata={"channel": "web"},
        timestamp=(now.replace(hour=0, minute=0, second=0)).isoformat(),
    )
    ingest(api, "ada", "demo_request", metadata={"channel": "email"}, timestamp=now.isoformat())
    ingest(api, "ada", "webinar", metadata={"channel": "webinar"}, timestamp=now.isoformat())
    ingest(api, "ada", "page_view", metadata={"channel": "web"}, timestamp="2020-01-01T00:00:00Z")
    settle(app, run_worker)
    r = api.get("/lead/ada/activity")
    assert r.status_code == 200, r.json
    # newest first (same time: the later arrival first)
    assert [(e["event_type"], e["score_delta"]) for e in r.json["events"]] == [
        ("webinar", None),
        ("demo_request", 30),
        ("page_view", 5),
    ]
    assert (
        r.json["timeline"][1]
        == {
            "type": "event",
            "timestamp": r.json["events"][1]["timestamp"],
            "id": r.json["events"][1]["id"],
            "title": "demo_request",
            "score_delta": 30,
        }
        and r.json["orders"] == []
    )

    def types(**q):
        resp = api.get("/lead/ada/activity", query_string=q)
        assert resp.status_code == 200, resp.json
        return [e["event_type"] for e in resp.json["events"]]

    assert types(channel="web") == ["page_view"]
    assert types(hasDelta="true") == ["demo_request", "page_view"]
    assert types(hasDelta="0") == ["webinar"]
    assert types(minScore=10) == ["demo_request"]
    assert types(range="all") == ["webinar", "demo_request", "page_view", "page_view"]
    assert types(range="custom", start="2019-12-31T00:00:00Z", end="2020-01-02T00:00:00Z") == ["page_view"]
    for q, field in [
        ({"range": "custom"}, "start"),
        ({"range": "custom", "start": "2020-01-02T00:00:00Z", "end": "2020-01-01T00:00:00Z"}, "end"),
        ({"channel": "fax"}, "channel"),
        ({"minScore": -1}, "minScore"),
        ({"minScore": 10**23}, "minScore"),
        ({"hasDelta": "maybe"}, "hasDelta"),
    ]:
        resp = api.get("/lead/ada/activity", query_string=q)
        assert resp.status_code == 400 and field in resp.json["error"]["details"], (q, resp.json)
    assert api.get("/lead/nobody/activity").status_code == 404
    assert Api(client, other_tenant).get("/lead/ada/activity").status_code == 404


def test_the_export_never_hands_a_spreadsheet_a_formula(api):
    """Cells that begin with = + - @ tab or CR start with a quote (OWASP's CSV injection advice); others are as sent."""
    cells = ['=HYPERLINK("evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    for n, cell in enumerate(cells):
        ingest(api, cell, "page_view", metadata={"channel": cell, "n": n})
    ingest(api, "plain", "page_view", metadata={"channel": "web"})
    export = api.get("/events/export")
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True), newline="")))
    by_lead = {r["lead_id"]: r for r in rows}
    assert set(by_lead) == {"'" + c for c in cells} | {"plain"}
    assert all(by_lead["'" + c]["channel"] == "'" + c for c in cells)
    assert by_lead["plain"]["channel"] == "web" and by_lead["plain"]["metadata"].startswith("{")


def test_a_channel_that_is_not_text_is_shown_and_exported_as_text(api):
    """metadata.channel is the client's to fill: a number or an object there reads as its JSON everywhere, as GET
    /channels lists it, and never breaks the export."""
    ingest(api, "ada", "page_view", metadata={"channel": 5}, timestamp="2026-11-20T10:00:00Z")
    ingest(api, "bob", "page_view", metadata={"channel": {"a": [1, "é"]}}, timestamp="2026-11-21T10:00:00Z")
    ingest(api, "cy", "page_view", metadata={"channel": None}, timestamp="2026-11-22T10:00:00Z")
    listed = api.get("/events")
    assert [(e["lead_id"], e["channel"]) for e in listed.json] == [
        ("cy", None),
        ("bob", '{"a": [1, "é"]}'),
        ("ada", "5"),
    ]
    assert sorted(api.get("/channels").json) == ["5", '{"a": [1, "é"]}']
    assert api.get("/lead/ada/activity", query_string={"range": "all"}).json["events"][0]["channel"] == "5"
    export = api.get("/events/export")
    assert export.status_code == 200
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True), newline="")))
    assert {r["lead_id"]: r["channel"] for r in rows} == {"ada": "5", "bob": '{"a": [1, "é"]}', "cy": ""}
