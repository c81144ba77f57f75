"""POST /ingest's lane below Flask answers exactly as the Flask view would, and only what it fully accepts."""

import json

import pytest
from sqlalchemy import func, select, text
from werkzeug.test import Client
from werkzeug.wrappers import Response

from models.events import Event
from tests.auth_helpers import member_client
from tests.conftest import basic


def lane(app):
    return app.wsgi_app


def flask_only(app) -> Client:
    """The same app without the lane: what every request got before it existed."""
    return Client(lane(app).wsgi_app, Response, use_cookies=False)  # cookies go as headers, as sent


def answer(resp) -> tuple:
    body = json.loads(resp.get_data()) if resp.get_data() else None
    if isinstance(body, dict) and "id" in body:
        body = {**body, "id": "<id>"}
    # Lengths differ by the id; what is left of a rate limit by the request before.
    headers = {
        k: v
        for k, v in resp.headers.items()
        if k not in ("Date", "Content-Length", "RateLimit-Remaining", "RateLimit-Reset")
    }
    return resp.status_code, body, headers


def stored(app) -> int:
    with app.extensions["leadpulse"].Session() as s:
        return s.execute(select(func.count()).select_from(Event)).scalar()


def test_a_plain_event_is_answered_by_the_lane_once_its_credential_is_known(api, app, tenant):
    first = api.post("/ingest", json={"lead_id": "ada", "event_type": "page_view", "event_id": "e1"})
    assert lane(app).served == 0  # the credential was not cached yet: Flask looked it up
    second = api.post(
        "/ingest", json={"lead_id": "ada", "event_type": "page_view", "event_id": "e2", "metadata": {"url": "/x"}}
    )
    again = api.post("/events", json={"lead_id": "ada", "event_type": "page_view"}, headers={"Idempotency-Key": "e2"})
    assert lane(app).served == 2
    assert first.status_code == second.status_code == again.status_code == 202
    assert second.json == {
        "message": "event ingested",
        "event_id": "e2",
        "id": second.json["id"],
        "lead_id": "ada",
        "duplicate": False,
        "metadata": {"url": "/x"},
    }
    assert again.json["duplicate"] is True and again.json["event_id"] == "e2" and again.json["id"] == second.json["id"]
    assert stored(app) == 2


REQUESTS = [
    # (what, path, body bytes or JSON, extra headers, auth: "cred" | "wrong" | "none" | "bearer")
    ("plain", "/ingest", {"lead_id": "l1", "event_type": "page_view"}, {}, "cred"),
    (
        "aliases",
        "/ingest",
        {"aliases": [{"alias_kind": "email", "raw_value": " Ada@X.io "}], "event_type": "x"},
        {},
        "cred",
    ),
    ("deprecated alias", "/ingest", {"alias_kind": "email", "alias": "b@x.io", "event_type": "x"}, {}, "cred"),
    (
        "timestamp",
        "/events",
        {"lead_id": "l2", "event_type": "x", "timestamp": "2025-01-01T10:00:00+02:00"},
        {},
        "cred",
    ),
    ("missing event_type", "/ingest", {"lead_id": "l1"}, {}, "cred"),
    ("no lead", "/ingest", {"event_type": "x"}, {}, "cred"),
    ("wrong type", "/ingest", {"lead_id": 5, "event_type": "x"}, {}, "cred"),
    ("unknown field", "/ingest", {"lead_id": "l1", "event_type": "x", "score": 3}, {}, "cred"),
    ("reserved type", "/ingest", {"lead_id": "l1", "event_type": "DECAY"}, {}, "cred"),
    ("NUL", "/ingest", {"lead_id": "l\u0000", "event_type": "x"}, {}, "cred"),
    ("metadata not a dict", "/ingest", {"lead_id": "l1", "event_type": "x", "metadata": [1]}, {}, "cred"),
    (
        "metadata too large",
        "/ingest",
        {"lead_id": "l1", "event_type": "x", "metadata": {"k": "v" * 110_000}},
        {},
        "cred",
    ),
    (
        "key disagrees",
        "/ingest",
        {"lead_id": "l1", "event_type": "x", "event_id": "a"},
        {"Idempotency-Key": "b"},
        "cred",
    ),
    ("key unprintable", "/ingest", {"lead_id": "l1", "event_type": "x"}, {"Idempotency-Key": "a\tb"}, "cred"),
    (
        "empty alias",
        "/ingest",
        {"aliases": [{"alias_kind": "email", "raw_value": "   "}], "event_type": "x"},
        {},
        "cred",
    ),
    ("a list", "/ingest", [{"lead_id": "l1", "event_type": "x"}], {}, "cred"),
    ("malformed JSON", "/ingest", b'{"lead_id": "l1",', {}, "cred"),
    ("NaN", "/ingest", b'{"lead_id": "l1", "event_type": "x", "metadata": {"n": NaN}}', {}, "cred"),
    ("not UTF-8", "/ingest", b'{"lead_id": "\xff", "event_type": "x"}', {}, "cred"),
    ("BOM", "/ingest", b'\xef\xbb\xbf{"lead_id": "l1", "event_type": "x"}', {}, "cred"),
    ("empty body", "/ingest", b"", {}, "cred"),
    ("text/plain", "/ingest", b'{"lead_id": "l1", "event_type": "x"}', {"Content-Type": "text/plain"}, "cred"),
    (
        "JSON with charset",
        "/ingest",
        b'{"lead_id": "l3", "event_type": "x"}',
        {"Content-Type": "application/json; charset=utf-8"},
        "cred",
    ),
    ("wrong secret", "/ingest", {"lead_id": "l1", "event_type": "x"}, {}, "wrong"),
    ("no credentials", "/ingest", {"lead_id": "l1", "event_type": "x"}, {}, "none"),
    ("malformed Basic", "/ingest", {"lead_id": "l1", "event_type": "x"}, {"Authorization": "Basic !!!"}, "none"),
    ("member token", "/ingest", {"lead_id": "l4", "event_type": "x"}, {}, "bearer"),
    ("trailing slash", "/ingest/", {"lead_id": "l1", "event_type": "x"}, {}, "cred"),
    (
        "body over 2 MB",
        "/ingest",
        {"lead_id": "l1", "event_type": "x", "metadata": {"k": "v" * (2 * 1024 * 1024)}},
        {},
        "cred",
    ),
    (
        "wrong secret, big body",
        "/ingest",
        {"lead_id": "l1", "event_type": "x", "metadata": {"k": "v" * 500_000}},
        {},
        "wrong",
    ),
    ("chunked", "/ingest", b'{"lead_id": "l5", "event_type": "x"}', {"Transfer-Encoding": "chunked"}, "cred"),
]


@pytest.mark.parametrize("what,path,body,headers,auth", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_every_request_gets_the_answer_the_flask_view_gives(client, app, tenant, what, path, body, headers, auth):
    creds = {
        "cred": tenant.auth,
        "wrong": basic(tenant.client_id, "not-the-secret"),
        "none": {},
        "bearer": {**member_client(client, tenant), "Cookie": f"activeOu={tenant.unit_id}"} if auth == "bearer" else {},
    }[auth]
    assert client.post("/ingest", json={"lead_id": "warm", "event_type": "x"}, headers=tenant.auth).status_code == 202
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **creds, **headers}
    served = lane(app).served
    with_lane = answer(client.post(path, data=data, headers=sent))
    lane_answered = lane(app).served > served
    without = answer(flask_only(app).post(path, data=data, headers=sent))
    if with_lane[0] == 202:  # the second one is the same event again, now without a key: stored anew
        assert with_lane[1]["duplicate"] is False and without[1]["duplicate"] is False
    assert with_lane == without
    lane_should = with_lane[0] == 202 and auth == "cred" and "Transfer-Encoding" not in headers
    assert lane_answered == lane_should, (
        "the lane answers valid events of a known credential with a declared length only"
    )


def test_a_revoked_credential_is_refused_at_once_by_the_lane_too(client, app, tenant):
    member = member_client(client, tenant)
    made = client.post("/secrets", json={"name": "tracker"}, headers=member).json
    auth = basic(made["client_id"], made["client_secret"])
    for _ in range(2):
        assert client.post("/ingest", json={"lead_id": "l", "event_type": "x"}, headers=auth).status_code == 202
    assert lane(app).served == 1
    assert client.delete(f"/secrets/{made['secret_id']}", headers=member).status_code == 204
    r = client.post("/ingest", json={"lead_id": "l", "event_type": "x"}, headers=auth)
    assert r.status_code == 401 and r.json["error"]["message"] == "invalid client credentials"
    assert stored(app) == 2


@pytest.mark.parametrize("errcode,status,code", [("40001", 503, "unavailable"), ("P0001", 500, "internal_error")])
def test_a_failed_commit_is_answered_as_the_flask_handlers_answer_it(
    client, app, tenant, settings, errcode, status, code
):
    """A serialization failure is retryable (503, Retry-After); any other database error is a 500; nothing is stored."""
    from models.db import get_engine

    assert client.post("/ingest", json={"lead_id": "warm", "event_type": "x"}, headers=tenant.auth).status_code == 202
    engine = get_engine(settings.database_url)
    with engine.begin() as conn:
        conn.execute(
            text(f"""CREATE OR REPLACE FUNCTION test_refuse_event() RETURNS trigger AS $$
            BEGIN RAISE EXCEPTION 'staged failure' USING ERRCODE = '{errcode}'; END $$ LANGUAGE plpgsql""")
        )
        conn.execute(
            text(
                "CREATE TRIGGER test_refuse_event BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION test_refuse_event()"
            )
        )
    try:
        sent = {"Content-Type": "application/json", **tenant.auth}
        served = lane(app).served
        with_lane = answer(client.post("/ingest", data=b'{"lead_id": "l", "event_type": "x"}', headers=sent))
        assert lane(app).served == served + 1
        without = answer(flask_only(app).post("/ingest", data=b'{"lead_id": "l", "event_type": "x"}', headers=sent))
    finally:
        with engine.begin() as conn:
            conn.execute(text("DROP TRIGGER test_refuse_event ON events"))
            conn.execute(text("DROP FUNCTION test_refuse_event()"))
    assert with_lane == without
    assert with_lane[0] == status and with_lane[1]["error"]["code"] == code
    assert (with_lane[2].get("Retry-After") == "1") == (status == 503)
    assert stored(app) == 1


def test_the_lane_counts_and_logs_its_requests_like_any_other(api, app, tenant, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="leadpulse")
    api.post("/ingest", json={"lead_id": "l", "event_type": "x"})
    before = app.test_client().get("/metrics").get_data(as_text=True)
    api.post("/ingest", json={"lead_id": "l", "event_type": "x"})
    after = app.test_client().get("/metrics").get_data(as_text=True)
    assert lane(app).served == 1
    count = lambda text: float(
        next(
            line for line in text.splitlines() if line.startswith('http_requests_total{code="202",method="POST"}')
        ).rsplit(" ", 1)[1]
    )
    assert count(after) == count(before) + 1
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("POST /ingest 202")]
    assert len(lines) == 2 and all(line.endswith(f"by={lines[0].rsplit('by=', 1)[1]}") for line in lines)
    assert tenant.client_secret not in "\n".join(r.getMessage() for r in caplog.records)


def test_one_idempotency_key_is_one_event_whichever_path_takes_it(client, app, tenant):
    for key in ("k-1", "clé-2"):  # a header is Latin-1 in WSGI: both paths must read it the same way
        sent = {"Content-Type": "application/json", "Idempotency-Key": key.encode().decode("latin-1"), **tenant.auth}
        first = flask_only(app).post("/ingest", data=b'{"lead_id": "l", "event_type": "x"}', headers=sent)
        served = lane(app).served
        second = client.post("/ingest", data=b'{"lead_id": "l", "event_type": "x"}', headers=sent)
        assert lane(app).served == served + 1
        assert first.status_code == second.status_code == 202
        assert (first.json["duplicate"], second.json["duplicate"]) == (False, True)
        assert (
            first.json["id"] == second.json["id"]
            and first.json["event_id"] == second.json["event_id"] == sent["Idempotency-Key"]
        )
    assert stored(app) == 2


def test_both_paths_answer_the_clients_key_as_event_id_and_the_stored_event_as_id(client, app, tenant):
    sent = {"Content-Type": "application/json", **tenant.auth}
    assert client.post("/ingest", json={"lead_id": "warm", "event_type": "x"}, headers=tenant.auth).status_code == 202
    for body, headers, key in [
        (b'{"lead_id": "l", "event_type": "x", "event_id": "b-1"}', {}, "b-1"),
        (b'{"lead_id": "l", "event_type": "x"}', {"Idempotency-Key": "h-1"}, "h-1"),
        (b'{"lead_id": "l", "event_type": "x"}', {}, None),
    ]:
        first = flask_only(app).post("/ingest", data=body, headers={**sent, **headers})
        served = lane(app).served
        second = client.post("/ingest", data=body, headers={**sent, **headers})
        assert lane(app).served == served + 1
        assert first.json["event_id"] == second.json["event_id"] == key
        assert (first.json["id"] == second.json["id"]) == (key is not None)  # a keyless repeat is a new event
        assert int(first.json["id"]) > 0


def test_a_credential_revoked_by_another_process_is_refused_once_its_cache_expires(client, app, tenant, monkeypatch):
    """Another process's revocation reaches this one within CREDENTIAL_TTL (documented), the lane included."""
    import webapp.auth

    for _ in range(2):
        assert client.post("/ingest", json={"lead_id": "l", "event_type": "x"}, headers=tenant.auth).status_code == 202
    assert lane(app).served == 1
    with app.extensions["leadpulse"].Session() as s, s.begin():  # revoked elsewhere: this process is not told
        s.execute(text("DELETE FROM api_credentials WHERE client_id = :c"), {"c": tenant.client_id})
    assert client.post("/ingest", json={"lead_id": "l", "event_type": "x"}, headers=tenant.auth).status_code == 202
    later = webapp.auth.time.monotonic() + webapp.auth.CREDENTIAL_TTL + 1
    monkeypatch.setattr(webapp.auth.time, "monotonic", lambda: later)
    r = client.post("/ingest", json={"lead_id": "l", "event_type": "x"}, headers=tenant.auth)
    assert r.status_code == 401 and lane(app).served == 2


def test_a_revocation_during_a_lookup_is_not_cached_over(client, app, tenant, settings):
    """A request that read the credential just before it was revoked answers, but does not cache it afresh."""
    from sqlalchemy import event as sa_event

    from models.db import get_engine
    from webapp.auth import forget_credential

    engine = get_engine(settings.database_url)

    def revoke_meanwhile(conn, cursor, statement, *args):
        if "FROM api_credentials" in statement:
            forget_credential(tenant.client_id)

    sa_event.listen(engine, "after_cursor_execute", revoke_meanwhile)
    try:
        assert client.post("/ingest", json={"lead_id": "l", "event_type": "x"}, headers=tenant.auth).status_code == 202
    finally:
        sa_event.remove(engine, "after_cursor_execute", revoke_meanwhile)
    assert client.post("/ingest", json={"lead_id": "l", "event_type": "x"}, headers=tenant.auth).status_code == 202
    assert lane(app).served == 0  # the second looked the credential up again instead of trusting the first's read
