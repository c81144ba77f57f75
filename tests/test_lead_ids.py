"""Every lead the API can create is reachable at /lead/{id}: ids that cannot be one URL path segment are refused at
every entry that names a lead id, with a 400 naming the field."""

import base64
import io
import json
from urllib.parse import quote

import pytest

from tests.auth_helpers import member_client
from tests.test_ingest_lane import lane
from tests.test_webhooks import signed
from webapp.services.lead_ids import RESERVED_LEAD_IDS

UNREACHABLE = ["a/b", "/", "trailing/", ".", "..", *sorted(RESERVED_LEAD_IDS)]
REACHABLE = ["Export", "...", ".hidden", "a b", "a?b#c", "100%", "a%2Fb", "back\\slash", "ünï", "a;b=c", "+"]


def path_of(lead_id: str) -> str:
    return quote(lead_id, safe="")


def test_reserved_ids_are_the_static_siblings_of_lead_ids_in_the_url_map(app):
    """A static path segment where a lead id sits in another route (GET /events/export beside /events/{lead_id})
    shadows that lead: every such segment must be reserved, and nothing else is."""
    rules = [rule.rule.strip("/").split("/") for rule in app.url_map.iter_rules()]
    siblings, lead_positions = set(), 0
    for parts in rules:
        for i, part in enumerate(parts):
            if part != "<lead_id>":
                continue
            lead_positions += 1
            for other in rules:
                if len(other) > i and other[:i] == parts[:i] and not other[i].startswith("<"):
                    siblings.add(other[i])
                elif len(other) > i and other[:i] == parts[:i]:
                    assert other[i] == "<lead_id>", f"/{'/'.join(other)}: another variable where a lead id sits"
    assert lead_positions >= 10  # /lead/{id}, /leads/{id}, /score/{id}, /events/{id} and their sub-paths
    assert siblings == RESERVED_LEAD_IDS


@pytest.mark.parametrize("lead_id", UNREACHABLE)
def test_ingest_refuses_an_unreachable_lead_id_in_flask_and_in_its_lane(api, app, lead_id):
    assert api.post("/ingest", json={"lead_id": "warm", "event_type": "page_view"}).status_code == 202
    served = lane(app).served  # the credential is cached now: the lane sees every plain event
    r = api.post("/ingest", json={"lead_id": lead_id, "event_type": "page_view"})
    assert r.status_code == 400 and list(r.json["error"]["details"]) == ["lead_id"], r.json
    assert lane(app).served == served  # the lane refused it too, and Flask answered why
    r = api.post("/events", json={"lead_id": lead_id, "event_type": "page_view"})
    assert r.status_code == 400 and list(r.json["error"]["details"]) == ["lead_id"]
    assert api.post("/ingest", json={"lead_id": "fine", "event_type": "page_view"}).status_code == 202
    assert lane(app).served == served + 1


def test_a_batch_refuses_the_item_alone(api):
    events = [{"lead_id": lead_id, "event_type": "page_view"} for lead_id in ["ok", *UNREACHABLE]]
    r = api.post("/ingest/batch", json={"events": events})
    assert r.status_code == 202, r.json
    results = r.json["results"]
    assert results[0]["status"] == "accepted"
    for result in results[1:]:
        assert result["status"] == "rejected" and list(result["error"]["details"]) == ["lead_id"], result


def test_an_import_reports_the_row(api):
    rows = "".join(f"page_view,{lead_id}\n" for lead_id in ["ok", "a/b", "export", ".."])
    data = {"file": (io.BytesIO(f"event_type,lead_id\n{rows}".encode()), "events.csv", "text/csv")}
    r = api.post("/import", data=data, content_type="multipart/form-data")
    assert r.status_code == 202 and (r.json["accepted"], r.json["rejected"]) == (1, 3), r.json
    assert [(e["line"], list(e["error"])) for e in r.json["errors"]] == [
        (3, ["lead_id"]),
        (4, ["lead_id"]),
        (5, ["lead_id"]),
    ]


def test_a_signed_webhook_is_refused(client, tenant):
    headers = member_client(client, tenant)
    src = client.post("/webhooks/sources", json={"name": "Site"}, headers=headers).json
    data, sig = signed(src["secret"], {"lead_id": "a/b", "event_type": "page_view"})
    r = client.post(src["url"], data=data, headers=sig)
    assert r.status_code == 400 and list(r.json["error"]["details"]) == ["lead_id"], r.json


@pytest.mark.parametrize("lead_id", ["a/b", "..", "search"])
def test_creating_and_merging_refuse_unreachable_ids(api, lead_id):
    r = api.post("/leads", json={"id": lead_id})
    assert r.status_code == 400 and list(r.json["error"]["details"]) == ["id"], r.json
    assert api.post("/leads", json={"id": "src"}).status_code == 201
    r = api.post("/leads/merge", json={"targetLeadId": lead_id, "sourceLeadIds": ["src"]})
    assert r.status_code == 400 and list(r.json["error"]["details"]) == ["targetLeadId"], r.json


def test_segment_ids_with_a_slash_are_aliases_and_the_lead_is_reachable(client, api, tenant):
    """userId and anonymousId become aliases, never the lead's id: any of them is accepted."""
    src = client.post(
        "/webhooks/sources", json={"name": "Segment", "kind": "segment"}, headers=member_client(client, tenant)
    ).json
    auth = {"Authorization": "Basic " + base64.b64encode(f"{src['write_key']}:".encode()).decode()}
    msg = {"type": "track", "event": "Signed Up", "userId": "team/42", "anonymousId": "..", "messageId": "m1"}
    r = client.post("/webhooks/segment", json=msg, headers=auth)
    assert r.status_code == 200 and r.json["results"][0]["status"] == "accepted", r.json
    lead_id = r.json["results"][0]["lead_id"]
    assert lead_id.startswith("ld_")
    got = api.get(f"/lead/{path_of(lead_id)}").json["lead"]
    assert {(a["alias_kind"], a["value"]) for a in got["aliases"]} == {("external_id", "team/42"), ("cookie", "..")}


def test_every_accepted_id_is_read_and_deleted_through_the_api(api, run_worker):
    for i, lead_id in enumerate(REACHABLE):
        body = {"lead_id": lead_id, "event_type": "page_view"} if i % 2 else None
        r = api.post("/ingest", json=body) if body else api.post("/leads", json={"id": lead_id})
        assert r.status_code in (201, 202), (lead_id, r.json)
    run_worker()
    for lead_id in REACHABLE:
        at = path_of(lead_id)
        assert api.get(f"/lead/{at}").json["lead"]["id"] == lead_id
        assert api.get(f"/leads/{at}").json["lead"]["id"] == lead_id
        assert api.get(f"/score/{at}").json["lead_id"] == lead_id
        assert api.get(f"/events/{at}").status_code == 200
        assert api.delete(f"/lead/{at}").status_code == 200, lead_id
    run_worker()
    for lead_id in REACHABLE:
        at = path_of(lead_id)
        assert api.get(f"/lead/{at}/deletion-status").json["status"] == "completed", json.dumps(lead_id)
        assert api.get(f"/lead/{at}").status_code == 404
