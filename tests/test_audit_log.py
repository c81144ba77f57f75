"""The audit log: what is recorded (and what never is), who sees it, its filters and sorting, its retention, and that
its write never fails or holds a request."""

from __future__ import annotations

import io
import logging
import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from models.audit import AuditLog
from models.audit_records import AuditEntry, write_entry
from models.base import utcnow
from tests.auth_helpers import member_client
from tests.conftest import basic, make_tenant

LOGS = "/admin/audit-logs"


def rows(app) -> list[AuditLog]:
    with app.extensions["leadpulse"].Session() as s:
        return s.execute(select(AuditLog).order_by(AuditLog.id)).scalars().all()


def listed(client, headers, **params) -> list[dict]:
    r = client.get(LOGS, headers=headers, query_string=params)
    assert r.status_code == 200, r.json
    return r.json["items"]


def every_value(app) -> str:
    """Every stored column of every entry, as one text to look for a secret in."""
    return "\n".join(repr([getattr(r, c.name) for c in AuditLog.__table__.columns]) for r in rows(app))


@pytest.fixture
def member(client, tenant) -> dict:
    return member_client(client, tenant)


def test_a_mutating_request_is_recorded_with_who_made_it_and_a_read_is_not(app, client, tenant, api, member):
    before = len(rows(app))
    assert api.get("/leads").status_code == 200
    assert api.post("/leads", json={"id": "ada"}).status_code == 201
    assert api.put("/lead/ada", json={"metadata": {"plan": "pro"}}).status_code == 200
    assert client.delete("/lead/nobody", headers=member).status_code == 404
    new = rows(app)[before:]
    assert [(r.method, r.path, r.status) for r in new] == [
        ("POST", "/leads", 201),
        ("PUT", "/lead/ada", 200),
        ("DELETE", "/lead/nobody", 404),
    ]
    by_credential, _, by_member = new
    with app.extensions["leadpulse"].Session() as s:
        cred = s.execute(
            text("SELECT id, name FROM api_credentials WHERE client_id = :c"), {"c": tenant.client_id}
        ).one()
        member_id = s.execute(text("SELECT id FROM members WHERE email = :e"), {"e": tenant.email}).scalar()
    assert (by_credential.credential_id, by_credential.client_id, by_credential.credential_name) == (
        cred.id,
        tenant.client_id,
        cred.name,
    )
    assert by_credential.member_id is None and by_credential.user_email is None
    assert (by_member.member_id, by_member.user_email, by_member.credential_id) == (member_id, tenant.email, None)
    for r in new:
        assert (r.org_id, r.unit_id, r.ip) == (tenant.org_id, tenant.unit_id, "127.0.0.1")
        assert r.latency_ms >= 0 and abs(r.created_at - utcnow()) < timedelta(minutes=1)
    listed_paths = [item["path"] for item in listed(client, member, sort_order="ASC")]
    assert listed_paths[-3:] == ["/leads", "/lead/ada", "/lead/nobody"]


def test_logins_are_recorded_and_a_failure_goes_under_no_ou_whether_or_not_the_email_exists(app, client, tenant):
    assert client.post("/auth/login", json={"email": tenant.email, "password": "wrong password"}).status_code == 401
    assert client.post("/auth/login", json={"email": "ghost@example.com", "password": "wrong"}).status_code == 401
    assert client.post("/auth/login", json={"email": "not-an-email", "password": "x"}).status_code == 400
    ok = client.post("/auth/login", json={"email": tenant.email.upper(), "password": tenant.password})
    assert ok.status_code == 200
    known, unknown, malformed, success = rows(app)
    shape = lambda r: (r.org_id, r.unit_id, r.member_id, r.credential_id, r.method, r.path, r.status)
    # A wrong password for a member and for an email nobody has: the same entry but for the email tried.
    assert shape(known) == shape(unknown) == (None, None, None, None, "POST", "/auth/login", 401)
    assert (known.user_email, unknown.user_email) == (tenant.email, "ghost@example.com")
    assert shape(malformed) == (None, None, None, None, "POST", "/auth/login", 400) and malformed.user_email is None
    assert (success.org_id, success.unit_id, success.user_email, success.status) == (
        tenant.org_id,
        tenant.unit_id,
        tenant.email,
        200,
    )
    assert success.latency_ms > 1  # the password hash's check is in it
    assert tenant.password not in every_value(app) and "wrong password" not in every_value(app)
    headers = {"Authorization": f"Bearer {ok.json['token']}"}
    assert client.post("/org-units/active", json={"ouId": tenant.unit_id}, headers=headers).status_code == 200
    # The OU's log shows the success (and the OU picked), never the failures.
    assert [(i["path"], i["status"]) for i in listed(client, headers, sort_order="ASC")] == [
        ("/auth/login", 200),
        ("/org-units/active", 200),
    ]


def test_a_member_acting_with_no_ou_selected_is_recorded_under_each_of_their_ous(app, client, tenant):
    token = client.post("/auth/login", json={"email": tenant.email, "password": tenant.password}).json["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    client.post("/org-units/active", json={"ouId": tenant.unit_id}, headers=bearer)
    created = client.post("/org-units", json={"name": "EMEA"}, headers=bearer)
    assert created.status_code == 201
    client.delete_cookie("activeOu")
    assert client.post("/auth/logout", headers=bearer).status_code == 204
    entry = [r for r in rows(app) if r.path == "/auth/logout"]
    assert sorted(r.unit_id for r in entry) == sorted([tenant.unit_id, created.json["unit_id"]])
    assert {(r.org_id, r.user_email, r.status) for r in entry} == {(tenant.org_id, tenant.email, 204)}


def test_no_body_no_secret_and_no_query_string_is_ever_stored(app, client, tenant, member):
    assert (
        client.post("/leads", json={"id": "cy", "metadata": {"note": "body-only-value"}}, headers=member).status_code
        == 201
    )
    made = client.post("/secrets", json={"name": "tracker"}, headers=member)
    assert made.status_code == 201
    secret = made.json["client_secret"]
    assert client.post("/leads", json={"id": "ada"}, headers=basic(made.json["client_id"], secret)).status_code == 201
    assert client.post("/leads", json={"id": "bob"}, headers=basic(made.json["client_id"], "guess")).status_code == 401
    source = client.post(
        "/webhooks/sources",
        json={"name": "hs", "kind": "hubspot", "client_secret": "hubspot-app-secret"},
        headers=member,
    )
    assert source.status_code == 201
    # An OAuth callback: its code and state are in the query string, which no entry holds.
    callback = client.get("/integrations/slack/callback?state=state-value-42&code=oauth-code-42")
    assert callback.status_code == 400
    stored = every_value(app)
    for never in (
        secret,
        tenant.password,
        tenant.client_secret,
        "hubspot-app-secret",
        source.json.get("secret") or "whsec_",
        "oauth-code-42",
        "state-value-42",
        "body-only-value",
        "Basic ",
        "Bearer ",
    ):
        assert never not in stored, never
    assert ("GET", "/integrations/slack/callback", 400, None) in [
        (r.method, r.path, r.status, r.unit_id) for r in rows(app)
    ]
    by_new = [r for r in rows(app) if r.path == "/leads" and r.credential_id][0]
    assert (by_new.client_id, by_new.credential_name) == (made.json["client_id"], "tracker")
    refused = [r for r in rows(app) if r.path == "/leads" and r.status == 401][0]
    assert (refused.org_id, refused.unit_id, refused.client_id, refused.credential_id) == (None, None, None, None)


def test_event_ingestion_and_inbound_webhooks_are_not_audited_but_an_import_is(app, client, tenant, api, member):
    assert api.get("/leads").status_code == 200  # the credential is cached: the lane below Flask takes its events
    before = len(rows(app))
    lane = app.wsgi_app.served
    assert api.post("/ingest", json={"lead_id": "ada", "event_type": "page_view"}).status_code == 202
    assert app.wsgi_app.served == lane + 1  # the lane below Flask answered that one
    assert api.post("/events", json={"lead_id": "ada", "event_type": "page_view", "x": 1}).status_code == 400
    assert client.post("/ingest", json={"lead_id": "ada", "event_type": "x"}, headers=member).status_code == 202
    assert api.post("/ingest/batch", json={"events": [{"lead_id": "bob", "event_type": "x"}]}).status_code == 202
    refused = basic(tenant.client_id, "wrong")
    assert client.post("/ingest", json={"lead_id": "ada", "event_type": "x"}, headers=refused).status_code == 401
    source = client.post("/webhooks/sources", json={"name": "site"}, headers=member).json
    assert client.post(source["url"], json={"type": "x", "data": {}}).status_code in (400, 401)  # unsigned
    assert client.post("/webhooks/segment", json={"type": "track"}).status_code in (400, 401)
    assert client.post("/webhooks/hubspot?source=nope", json=[]).status_code in (401, 404)
    assert [(r.method, r.path) for r in rows(app)[before:]] == [("POST", "/webhooks/sources")]
    csv = b"lead_id,event_type\nada,page_view\n"
    r = api.post("/import", data={"file": (io.BytesIO(csv), "events.csv")})
    assert r.status_code == 202, r.json
    assert [(r.method, r.path, r.status) for r in rows(app)[-1:]] == [("POST", "/import", 202)]


def test_another_ous_entries_and_entries_under_no_ou_are_never_listed(app, client, tenant, settings, member):
    other = make_tenant(settings, org="Globex", unit="East")
    sibling = make_tenant(settings, org="Acme", unit="West", email="west@example.com")
    with app.extensions["leadpulse"].Session() as s, s.begin():
        for t in (other, sibling):
            write_entry(s, AuditEntry("POST", f"/theirs-{t.unit_id}", 201, 1.0, org_id=t.org_id, unit_id=t.unit_id))
        write_entry(s, AuditEntry("POST", "/nobodys", 401, 1.0, user_email=tenant.email))
        write_entry(s, AuditEntry("POST", "/mine", 201, 1.0, org_id=tenant.org_id, unit_id=tenant.unit_id))
    items = listed(client, member, limit=500)
    assert "/mine" in [i["path"] for i in items]
    assert {i["unit_id"] for i in items} == {tenant.unit_id}
    assert not [i for i in items if i["path"].startswith(("/theirs", "/nobodys"))]
    assert listed(client, member, search="theirs") == [] and listed(client, member, search="nobodys") == []
    theirs = app.test_client()
    theirs_member = member_client(theirs, other)
    assert [i["path"] for i in listed(theirs, theirs_member)] == [
        "/org-units/active",
        "/auth/login",
        f"/theirs-{other.unit_id}",
    ]


def test_only_a_member_reads_the_log_and_only_with_an_ou_selected(client, tenant, api):
    r = api.get(LOGS)
    assert r.status_code == 403 and r.json["error"]["code"] == "forbidden"
    token = client.post("/auth/login", json={"email": tenant.email, "password": tenant.password}).json["token"]
    r = client.get(LOGS, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 400 and r.json["error"]["code"] == "no_active_ou"
    assert client.get(LOGS).status_code == 401


@pytest.fixture
def sample(app, tenant):
    """Five entries of the OU with known values, oldest first (ids 1..5 in creation order)."""
    now = utcnow()
    specs = [
        ("POST", "/leads", 201, "10.0.0.2", 12.5, "bo@example.com"),
        ("PUT", "/rulesets/r1", 400, "10.0.0.10", 3.0, "al@example.com"),
        ("DELETE", "/lead/50%_off", 204, "192.168.1.7", 40.0, None),
        ("PATCH", "/lead/ada/metadata", 404, None, 0.4, "cy@example.com"),
        ("POST", "/admin/seed", 503, "10.0.0.3", 7.0, "al@example.com"),
    ]
    with app.extensions["leadpulse"].Session() as s, s.begin():
        s.execute(text("DELETE FROM audit_logs"))  # the member's login and OU pick are not part of the sample
        for n, (method, path, status, ip, latency, email) in enumerate(specs):
            entry = AuditEntry(
                method, path, status, latency, ip=ip, org_id=tenant.org_id, unit_id=tenant.unit_id, user_email=email
            )
            write_entry(s, entry, now=now - timedelta(minutes=10 - n))
    return specs


def paths(client, member, **params) -> list[str]:
    return [i["path"] for i in listed(client, member, **params)]


def test_each_filter(client, member, sample):
    assert paths(client, member) == ["/admin/seed", "/lead/ada/metadata", "/lead/50%_off", "/rulesets/r1", "/leads"]
    assert paths(client, member, method="POST") == ["/admin/seed", "/leads"]
    assert paths(client, member, method="GET") == []
    assert paths(client, member, status_min=400) == ["/admin/seed", "/lead/ada/metadata", "/rulesets/r1"]
    assert paths(client, member, status_max=399) == ["/lead/50%_off", "/leads"]
    assert paths(client, member, status_min=400, status_max=404) == ["/lead/ada/metadata", "/rulesets/r1"]
    assert paths(client, member, status_min=204, status_max=204) == ["/lead/50%_off"]
    assert paths(client, member, user_email="al@example.com") == ["/admin/seed", "/rulesets/r1"]
    assert paths(client, member, user_email=" AL@example.com ") == ["/admin/seed", "/rulesets/r1"]
    assert paths(client, member, user_email="al@example") == []  # exact, not a substring
    # search: a case-insensitive substring of the email, the path or the address; % and _ are literal.
    assert paths(client, member, search="BO@") == ["/leads"]
    assert paths(client, member, search="ruleSETS") == ["/rulesets/r1"]
    assert paths(client, member, search="192.168") == ["/lead/50%_off"]
    assert paths(client, member, search="10.0.0.1") == ["/rulesets/r1"]
    assert paths(client, member, search="50%_") == ["/lead/50%_off"]
    assert paths(client, member, search="%") == ["/lead/50%_off"]
    assert paths(client, member, search="_") == ["/lead/50%_off"]
    assert paths(client, member, search="al@", method="PUT") == ["/rulesets/r1"]


def test_limit_and_offset_page_through_without_overlap(client, member, sample):
    r = client.get(LOGS, headers=member, query_string={"limit": 2, "offset": 1})
    assert r.status_code == 200
    assert (r.json["limit"], r.json["offset"]) == (2, 1)
    assert [i["path"] for i in r.json["items"]] == ["/lead/ada/metadata", "/lead/50%_off"]
    assert (lambda j: (j["limit"], j["offset"], len(j["items"])))(client.get(LOGS, headers=member).json) == (100, 0, 5)
    pages = [paths(client, member, limit=2, offset=o, sort_by="user_email") for o in (0, 2, 4, 6)]
    assert [len(p) for p in pages] == [2, 2, 1, 0]
    assert sorted(sum(pages, [])) == sorted(p for _, p, *_ in sample)


# Ascending order of the sample by each sortable column: ties by id; no email or no address last either way.
ASCENDING = {
    "created_at": ["/leads", "/rulesets/r1", "/lead/50%_off", "/lead/ada/metadata", "/admin/seed"],
    "method": ["/lead/50%_off", "/lead/ada/metadata", "/leads", "/admin/seed", "/rulesets/r1"],
    "path": ["/admin/seed", "/lead/50%_off", "/lead/ada/metadata", "/leads", "/rulesets/r1"],
    "status": ["/leads", "/lead/50%_off", "/rulesets/r1", "/lead/ada/metadata", "/admin/seed"],
    "latency_ms": ["/lead/ada/metadata", "/rulesets/r1", "/admin/seed", "/leads", "/lead/50%_off"],
    "user_email": ["/rulesets/r1", "/admin/seed", "/leads", "/lead/ada/metadata", "/lead/50%_off"],
    "ip": ["/rulesets/r1", "/leads", "/admin/seed", "/lead/50%_off", "/lead/ada/metadata"],  # as text
}


def test_each_sort_both_ways(client, member, sample):
    assert set(ASCENDING) == {"created_at", "user_email", "method", "path", "status", "ip", "latency_ms"}
    for sort_by, asc in ASCENDING.items():
        assert paths(client, member, sort_by=sort_by, sort_order="ASC") == asc, sort_by
        desc = paths(client, member, sort_by=sort_by, sort_order="DESC")
        nulls = 1 if sort_by in ("user_email", "ip") else 0  # stay last
        assert desc == list(reversed(asc[: len(asc) - nulls])) + asc[len(asc) - nulls :], sort_by
        assert paths(client, member, sort_by=sort_by) == desc, sort_by  # DESC is the default


BAD_FILTERS = [
    ({"limit": 0}, "limit"),
    ({"limit": 501}, "limit"),
    ({"limit": "ten"}, "limit"),
    ({"offset": -1}, "offset"),
    ({"method": "TRACE"}, "method"),
    ({"method": "post"}, "method"),
    ({"status_min": "abc"}, "status_min"),
    ({"status_max": 1000}, "status_max"),
    ({"status_min": 500, "status_max": 400}, "status_max"),
    ({"sort_by": "password"}, "sort_by"),
    ({"sort_order": "sideways"}, "sort_order"),
    ({"search": ""}, "search"),
    ({"search": "x" * 201}, "search"),
    ({"user_email": "x" * 321}, "user_email"),
]


def test_a_bad_filter_is_a_400_naming_its_field(client, member):
    for params, field in BAD_FILTERS:
        r = client.get(LOGS, headers=member, query_string=params)
        assert r.status_code == 400, (params, r.json)
        assert r.json["error"]["code"] == "validation_error" and list(r.json["error"]["details"]) == [field], r.json


def test_a_refused_audit_write_neither_fails_nor_holds_the_request(app, api, settings, caplog):
    """Another session holds the table locked (as a migration would): the write gives up within its lock timeout, the
    request answers as if nothing happened, and the next one is recorded again."""
    from models.db import get_engine

    blocker = get_engine(settings.database_url).connect()
    blocker.begin()
    blocker.execute(text("LOCK TABLE audit_logs IN ACCESS EXCLUSIVE MODE"))
    safety = threading.Timer(30, blocker.invalidate)  # never a hung suite, even if the write waited for ever
    safety.start()
    try:
        with caplog.at_level(logging.WARNING, logger="leadpulse.audit"):
            started = time.monotonic()
            r = api.post("/leads", json={"id": "ada"})
            took = time.monotonic() - started
    finally:
        safety.cancel()
        blocker.rollback()
        blocker.close()
    assert r.status_code == 201
    assert took < 10  # gave up at its 0.5 s lock timeout, not at the safety's 30 s
    assert "audit entry not written for POST /leads (201)" in caplog.text
    assert api.get("/lead/ada").status_code == 200
    assert [r.path for r in rows(app)] == []
    assert api.post("/leads", json={"id": "bob"}).status_code == 201
    assert [(r.path, r.status) for r in rows(app)] == [("/leads", 201)]


def test_a_caller_that_ties_up_every_audit_connection_only_loses_its_rows(app, api, settings):
    """The audit log's connections all busy (held here): the request still answers, after the pool's 1 s wait."""
    AuditSession = app.extensions["leadpulse"].AuditSession
    held = [AuditSession() for _ in range(3)]
    try:
        for s in held:
            s.connection()  # check one out and keep it
        r = api.post("/leads", json={"id": "ada"})
    finally:
        for s in held:
            s.close()
    assert r.status_code == 201
    assert rows(app) == []


def test_retention_prunes_old_entries_once_an_hour(app, settings, redis_conn, run_worker, monkeypatch, tenant):
    from rq import Queue

    from worker.jobs import prune_audit_log
    from worker.sweep import sweep_once

    now = utcnow()
    with app.extensions["leadpulse"].Session() as s, s.begin():
        for days in (400, 91, 89, 0):
            entry = AuditEntry("POST", f"/{days}-days-ago", 201, 1.0, org_id=tenant.org_id, unit_id=tenant.unit_id)
            write_entry(s, entry, now=now - timedelta(days=days, minutes=1))
    queue = Queue(settings.queue_name, connection=redis_conn)
    prunes = lambda: [j for j in queue.get_jobs() if j.func_name == "worker.jobs.prune_audit_log"]
    sweep = lambda: sweep_once(app.extensions["leadpulse"].Session, redis_conn, settings.queue_name, 2)
    sweep()
    sweep()
    assert len(prunes()) == 1  # one an hour, however many sweeps
    run_worker()
    assert [r.path for r in rows(app)] == ["/89-days-ago", "/0-days-ago"]
    sweep()
    assert prunes() == []  # within the hour
    monkeypatch.setenv("AUDIT_LOG_RETENTION_DAYS", "0")  # keep everything
    assert prune_audit_log() == 0
    monkeypatch.setenv("AUDIT_LOG_RETENTION_DAYS", "1")
    assert prune_audit_log() == 1 and [r.path for r in rows(app)] == ["/0-days-ago"]


def test_pruning_goes_in_batches_until_done(app, monkeypatch, tenant):
    from worker import jobs

    monkeypatch.setattr(jobs, "AUDIT_PRUNE_BATCH", 2)
    old = utcnow() - timedelta(days=100)
    with app.extensions["leadpulse"].Session() as s, s.begin():
        for n in range(5):
            write_entry(s, AuditEntry("POST", f"/old-{n}", 201, 1.0, unit_id=tenant.unit_id), now=old)
        write_entry(s, AuditEntry("POST", "/new", 201, 1.0, unit_id=tenant.unit_id))
    assert jobs.prune_audit_log() == 5
    assert [r.path for r in rows(app)] == ["/new"]


def test_what_a_hostile_path_holds_is_stored_safely(app, api):
    long = "/lead/" + "é" * 600
    assert api.delete(long).status_code == 404
    assert api.delete("/lead/a%00b").status_code == 404  # PostgreSQL stores no NUL
    assert [r.path for r in rows(app)] == [long[:500], "/lead/a\ufffdb"]
