"""POST /import: CSV rows become events, bad rows reported by line, idempotent by event_id, skip_triggers quiet."""

import dataclasses
import io

from sqlalchemy import select

from models.levels import LeadLevelChange
from models.slack import SlackAlert
from tests.conftest import Api
from tests.helpers import create_levels, leads_by_id, published_ruleset, settle
from webapp import create_app

CSV = (
    "event_type,lead_id,email,timestamp,metadata,event_id\n"
    'demo_request,ada,ada@x.io,2026-11-20T10:00:00Z,"{""utm"": ""fall""}",imp-1\n'
    "page_view,,Bob@X.io,2026-11-20T11:00:00Z,,imp-2\n"
    ",carol,,,,\n"
    "page_view,dave,,not-a-time,,\n"
    "page_view,erin,,,{not json},\n"
    "page_view,,,,,\n"
    "demo_request,ada,,2026-11-21T10:00:00Z,,imp-3\n"
    'page_view,fay,,,{""x"": NaN},\n'
    'page_view,gus,,,{""x"": 1e999},\n'
)


def upload(api, content: str | bytes, name="events.csv", mimetype="text/csv", **form):
    data = {"file": (io.BytesIO(content.encode() if isinstance(content, str) else content), name, mimetype), **form}
    return api.post("/import", data=data, content_type="multipart/form-data")


def test_the_document_describes_the_upload(api):
    body = api.get("/openapi.json").json["paths"]["/import"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert body["schema"]["required"] == ["file"] and body["encoding"]["file"]["contentType"] == "text/csv"


def test_good_rows_go_in_and_bad_rows_are_reported_by_line(api, app, run_worker):
    create_levels(api)
    published_ruleset(api, {"demo_request": 30, "page_view": 5})
    r = upload(api, CSV)
    assert r.status_code == 202, r.json
    body = r.json
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (3, 0, 6)
    assert [(e["line"], sorted(e["error"])) for e in body["errors"]] == [
        (4, ["event_type"]),
        (5, ["timestamp"]),
        (6, ["metadata"]),
        (7, ["lead_id"]),
        (9, ["metadata"]),
        (10, ["metadata"]),
    ]
    settle(app, run_worker)
    leads = leads_by_id(api)
    assert leads["ada"]["score"] == 60 and leads["ada"]["level"]["name"] == "Hot"
    again = upload(api, CSV)  # a re-import of the same file: the event_ids make it a no-op
    assert (again.json["accepted"], again.json["duplicate"]) == (0, 3)


def test_skip_triggers_scores_history_without_alerts(api, app, run_worker):
    create_levels(api)
    published_ruleset(api, {"demo_request": 30})
    r = upload(api, "event_type,lead_id\ndemo_request,ada\ndemo_request,ada\n", skip_triggers="true")
    assert r.status_code == 202 and r.json["skip_triggers"] is True
    settle(app, run_worker)
    assert leads_by_id(api)["ada"]["level"]["name"] == "Hot"
    with app.extensions["leadpulse"].Session() as s:
        assert s.execute(select(LeadLevelChange.alert_checked)).scalars().all() == [
            True
        ]  # recorded, never examined for alerts
        assert s.execute(select(SlackAlert)).first() is None
    api.post("/ingest", json={"lead_id": "bob", "event_type": "demo_request"})
    api.post("/ingest", json={"lead_id": "bob", "event_type": "demo_request"})
    settle(app, run_worker)
    with app.extensions["leadpulse"].Session() as s:  # live events still alert
        assert s.execute(select(SlackAlert.kind)).scalars().all() == ["lead"]


def test_refusals(api, settings, tenant, client):
    assert api.post("/import", json={"event_type": "x"}).status_code == 415
    assert upload(api, b"\x89PNG\r\n\x1a\n", name="logo.png", mimetype="image/png").status_code == 415
    r = api.post("/import", data={"other": (io.BytesIO(b"x"), "x.csv", "text/csv")}, content_type="multipart/form-data")
    assert r.status_code == 400 and "file" in r.json["error"]["details"]
    r = upload(api, "lead_id,kind\nada,x\n")
    assert r.status_code == 400 and "missing column event_type" in r.json["error"]["details"]["file"][0]
    r = upload(api, "event_type\npage_view\n\xff\xfe".encode("latin-1"))
    assert r.status_code == 415 and "not a UTF-8 CSV" in r.json["error"]["message"], (
        r.json
    )  # caught with the header read
    small = create_app(dataclasses.replace(settings, import_max_bytes=1024))
    big = "event_type,lead_id\n" + "page_view,lead\n" * 2000  # 30 KB against a 1 KB limit
    r = upload(Api(small.test_client(), tenant), big)
    assert r.status_code == 413 and r.json["error"]["code"] == "payload_too_large"
    assert (
        client.post(
            "/import", data={"file": (io.BytesIO(b"event_type\nx\n"), "a.csv")}, content_type="multipart/form-data"
        ).status_code
        == 401
    )
    assert leads_by_id(api) == {}
