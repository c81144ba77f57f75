"""Scores and levels reach HubSpot contacts: batched, coalesced, missing contacts reported, 429s rescheduled."""

import dataclasses
import time

import pytest
from rq import Queue
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select, update

from config import ALL_UNITS
from integrations.hubspot import HubSpotAdapter
from integrations.hubspot_sync import OPTIONS_WAIT, ensure_options, token_key
from integrations.leases import LEASE_TTL
from integrations.rate_limit import RateLimited
from integrations.redis_keys import HUBSPOT_OPTIONS_LOCK
from models.base import utcnow
from models.hubspot import HubSpotContact
from models.leads import Lead
from tests.conftest import Api, wait_until
from tests.fakes import FakeHubSpot
from tests.helpers import create_levels, published_ruleset, run_scheduled, settle
from webapp import create_app

TOKEN = "pat-na1-0123456789abcdef"
UPDATE = "/crm/v3/objects/contacts/batch/update"


@pytest.fixture
def hs(settings, clean, tenant, monkeypatch, run_worker):
    with FakeHubSpot(tokens=[TOKEN]) as fake:
        monkeypatch.setenv("HUBSPOT_API_BASE", fake.url)
        app = create_app(dataclasses.replace(settings, hubspot_api_base=fake.url))
        api = Api(app.test_client(), tenant)
        create_levels(api)
        published_ruleset(api, {"page_view": 5, "demo_request": 30})
        assert api.put("/integrations/hubspot", json={"access_token": TOKEN}).status_code == 200
        run_worker()  # the sync that connecting enqueues (nothing to send yet)
        yield fake, api, app


def send(api, email, event_type, n=1):
    for _ in range(n):
        r = api.post(
            "/ingest", json={"aliases": [{"alias_kind": "email", "raw_value": email}], "event_type": event_type}
        )
        assert r.status_code == 202


def props(fake, email):
    return (fake.contact_by_email(email) or {}).get("properties", {})


def scored_before_connecting(fake, settings, tenant, monkeypatch, run_worker, emails):
    """An app on the fake whose leads (one per email, each with its contact) are scored before HubSpot is connected:
    all of them wait for the first sync, which the connection queues. Returns (app, its settings)."""
    monkeypatch.setenv("HUBSPOT_API_BASE", fake.url)
    app_settings = dataclasses.replace(settings, hubspot_api_base=fake.url)
    app = create_app(app_settings)
    api = Api(app.test_client(), tenant)
    create_levels(api)
    published_ruleset(api, {"page_view": 5})
    for e in emails:
        fake.add_contact(e)
    events = [{"aliases": [{"alias_kind": "email", "raw_value": e}], "event_type": "page_view"} for e in emails]
    assert api.post("/ingest/batch", json={"events": events}).status_code == 202
    settle(app, run_worker)
    assert api.put("/integrations/hubspot", json={"access_token": TOKEN}).status_code == 200
    return app, app_settings


def test_changed_leads_reach_hubspot_batched_and_coalesced(hs, run_worker, app):
    fake, api, _ = hs
    fake.add_contact("ada@x.io")
    fake.add_contact("bob@x.io")
    send(api, "Ada@x.io", "demo_request", 2)  # 60: Hot
    send(api, "bob@x.io", "page_view", 1)  # 5: Cold
    send(api, "carol@x.io", "page_view", 1)  # no contact in HubSpot
    api.post("/ingest", json={"aliases": [{"alias_kind": "cookie", "raw_value": "anon"}], "event_type": "page_view"})
    run_worker()
    ada, bob = props(fake, "ada@x.io"), props(fake, "bob@x.io")
    assert ada["engagement_score"] == "60" and ada["engagement_level"] == "Hot"
    assert ada["engagement_top_drivers"] == "demo_request +60" and ada["engagement_level_changed_at"].endswith("Z")
    assert bob["engagement_score"] == "5" and bob["engagement_level"] == "Cold"
    assert fake.contact_by_email("carol@x.io") is None  # reported, not created
    with app.extensions["leadpulse"].Session() as s:
        rows = {
            lid: hc
            for lid, hc in s.execute(
                select(Lead.lead_id, HubSpotContact).join(HubSpotContact, HubSpotContact.lead_pk == Lead.pk)
            )
        }
    failures = [hc.failure for hc in rows.values() if hc.failure]
    assert len(rows) == 3 and len(failures) == 1 and "carol@x.io" in failures[0]
    updates = fake.requests_to(UPDATE)
    assert len(updates) == 1 and len(updates[0].body["inputs"]) == 2  # one batch call for both contacts
    # Nothing changed: nothing is sent. One lead changes: only it is sent, with its latest values.
    run_worker()
    assert len(fake.requests_to(UPDATE)) == 1
    send(api, "bob@x.io", "page_view", 5)
    run_worker()
    calls = fake.requests_to(UPDATE)
    assert len(calls) >= 2 and all(len(c.body["inputs"]) == 1 for c in calls[1:])
    assert props(fake, "bob@x.io")["engagement_score"] == "30" and props(fake, "bob@x.io")["engagement_level"] == "Warm"


def test_429_and_500_are_rescheduled_and_lose_nothing(hs, run_worker, settings, redis_conn):
    fake, api, _ = hs
    for i in range(3):
        fake.add_contact(f"u{i}@x.io")
    fake.fail_next(1, 429, path=UPDATE)
    send(api, "u0@x.io", "demo_request")
    send(api, "u1@x.io", "page_view")
    run_worker()
    assert "engagement_score" not in props(fake, "u0@x.io")  # refused for now, not dropped
    fake.fail_next(1, 500, path=UPDATE)
    run_scheduled(settings, redis_conn, run_worker)
    assert "engagement_score" not in props(fake, "u0@x.io")
    send(api, "u0@x.io", "page_view")  # a change while HubSpot is failing: the latest value is what lands
    run_worker()
    run_scheduled(settings, redis_conn, run_worker)
    assert props(fake, "u0@x.io")["engagement_score"] == "35"
    assert props(fake, "u1@x.io")["engagement_score"] == "5"


def test_not_configured_waits_then_delivers_latest(settings, clean, tenant, monkeypatch, run_worker, redis_conn):
    with FakeHubSpot(tokens=[TOKEN]) as fake:
        monkeypatch.setenv("HUBSPOT_API_BASE", fake.url)
        app = create_app(dataclasses.replace(settings, hubspot_api_base=fake.url))
        api = Api(app.test_client(), tenant)
        create_levels(api)
        published_ruleset(api, {"demo_request": 30})
        fake.add_contact("late@x.io")
        send(api, "late@x.io", "demo_request", 2)
        run_worker()  # no token anywhere: nothing sent, nothing lost
        assert fake.requests_to(UPDATE) == []
        assert api.put("/integrations/hubspot", json={"access_token": TOKEN}).status_code == 200
        from models.db import session_factory
        from worker.sweep import sweep_once

        sweep_once(
            session_factory(settings.database_url), redis_conn, settings.queue_name, settings.scoring_parallelism
        )
        run_worker()
        assert props(fake, "late@x.io")["engagement_score"] == "60"


def test_status_failures_and_resync(hs, run_worker):
    fake, api, _ = hs
    fake.add_contact("ada@x.io")
    send(api, "ada@x.io", "demo_request")
    send(api, "ghost@x.io", "demo_request")
    status = api.get("/integrations/hubspot").json
    assert status["pending"] == 2 and status["failed"] == 0
    run_worker()
    status = api.get("/integrations/hubspot").json
    assert status["pending"] == 0 and status["failed"] == 1 and status["last_sync_at"]
    r = api.get("/integrations/hubspot/failures")
    assert r.status_code == 200 and [f["email"] for f in r.json] == ["ghost@x.io"]
    assert "no HubSpot contact" in r.json[0]["error"] and r.json[0]["score"] == 30
    assert api.get("/integrations/hubspot/failures?page=1&limit=10").json["total"] == 1
    assert api.get("/integrations/hubspot/failures?limit=0").status_code == 400
    # the contact appears in HubSpot; a resync writes everyone again and clears the failure
    fake.add_contact("ghost@x.io")
    before = len(fake.requests_to(UPDATE))
    r = api.post("/integrations/hubspot/sync")
    assert r.status_code == 202 and r.json["pending"] == 2
    run_worker()
    assert props(fake, "ghost@x.io")["engagement_score"] == "30"
    assert len(fake.requests_to(UPDATE)) == before + 1
    assert api.get("/integrations/hubspot/failures").json == []


def test_resync_needs_a_connection(client, other_tenant):
    r = Api(client, other_tenant).post("/integrations/hubspot/sync")
    assert r.status_code == 409 and r.json["error"]["code"] == "not_connected"


def test_create_missing_contacts_when_the_ou_asks(hs, run_worker):
    fake, api, _ = hs
    assert (
        api.put("/integrations/hubspot", json={"access_token": TOKEN, "create_missing_contacts": True}).status_code
        == 200
    )
    send(api, "New@Person.io", "demo_request")
    run_worker()
    created = fake.contact_by_email("new@person.io")
    assert created is not None and created["properties"]["engagement_score"] == "30"
    assert api.get("/integrations/hubspot/failures").json == []


def test_daily_limit_waits_an_hour_not_ten_seconds(hs, run_worker, settings, redis_conn):
    import time

    fake, api, _ = hs
    fake.add_contact("d@x.io")
    fake.exhaust_daily(TOKEN)
    send(api, "d@x.io", "demo_request")
    run_worker()
    assert "engagement_score" not in props(fake, "d@x.io")
    registry = ScheduledJobRegistry(queue=Queue(settings.queue_name, connection=redis_conn))
    [job_id] = registry.get_job_ids()
    delay = registry.get_scheduled_time(job_id).timestamp() - time.time()
    assert 3000 < delay <= 3600
    assert (
        "DAILY" in api.get("/integrations/hubspot").json["last_error"]
        or "daily" in api.get("/integrations/hubspot").json["last_error"].lower()
    )


def test_real_workers_ride_out_429s_and_500s(settings, clean, tenant, worker_processes):
    """Two `leadpulse worker` processes (with the RQ scheduler) while HubSpot refuses for a while."""
    from tests.conftest import wait_until

    with FakeHubSpot(tokens=[TOKEN]) as fake:
        app = create_app(dataclasses.replace(settings, hubspot_api_base=fake.url))
        api = Api(app.test_client(), tenant)
        create_levels(api)
        published_ruleset(api, {"page_view": 5, "demo_request": 30})
        assert api.put("/integrations/hubspot", json={"access_token": TOKEN}).status_code == 200
        emails = [f"w{i}@x.io" for i in range(30)]
        for e in emails:
            fake.add_contact(e)
        fake.fail_next(3, 429, path=UPDATE)
        fake.fail_next(2, 500, path=UPDATE)
        worker_processes(2, HUBSPOT_API_BASE=fake.url)
        want = {}
        for i, e in enumerate(emails):
            send(api, e, "page_view", 1 + i % 3)
            if i % 4 == 0:
                send(api, e, "demo_request")
            want[e] = str(5 * (1 + i % 3) + (30 if i % 4 == 0 else 0))

        def delivered():
            return all(props(fake, e).get("engagement_score") == want[e] for e in emails)

        wait_until(delivered, timeout=90, interval=0.2, message="every contact to hold its latest score")
        statuses = [r.status for r in fake.requests_to(UPDATE)]
        assert statuses.count(429) == 3 and statuses.count(500) == 2


def test_5xx_past_the_retry_budget_reports_the_contacts_and_a_later_change_retries(
    hs, run_worker, settings, redis_conn
):
    fake, api, app = hs
    fake.add_contact("ada@x.io")
    fake.fail_next(5, 500, path=UPDATE)
    send(api, "ada@x.io", "demo_request")
    settle(app, run_worker)
    waits = []
    registry = ScheduledJobRegistry(queue=Queue(settings.queue_name, connection=redis_conn))
    for _ in range(4):
        [job_id] = registry.get_job_ids()
        waits.append((registry.get_scheduled_time(job_id) - utcnow()).total_seconds())
        assert api.get("/integrations/hubspot/failures").json == []  # still within the budget
        run_scheduled(settings, redis_conn, run_worker)
    # backoff doubles (RQ keeps whole seconds, and a little time has passed)
    assert all(want - 2 <= got <= want for got, want in zip(waits, [5, 10, 20, 40])), waits
    [failure] = api.get("/integrations/hubspot/failures").json
    assert (
        failure["email"] == "ada@x.io"
        and failure["score"] == 30
        and failure["error"].startswith("HubSpot 500 after 5 attempts")
    )
    assert "engagement_score" not in props(fake, "ada@x.io")
    assert api.get("/integrations/hubspot").json["failed"] == 1
    send(api, "ada@x.io", "page_view")  # a later change retries it, and HubSpot is back
    settle(app, run_worker)
    assert props(fake, "ada@x.io")["engagement_score"] == "35"
    assert api.get("/integrations/hubspot/failures").json == []


def test_contact_ids_read_by_email_are_kept_when_the_update_is_refused(hs, run_worker, settings, redis_conn):
    fake, api, app = hs
    ada = fake.add_contact("ada@x.io")
    fake.fail_next(1, 429, path=UPDATE)
    send(api, "ada@x.io", "demo_request")
    settle(app, run_worker)
    with app.extensions["leadpulse"].Session() as s:
        assert s.execute(select(HubSpotContact.hubspot_id, HubSpotContact.synced_score)).one() == (ada, None)
    run_scheduled(settings, redis_conn, run_worker)
    assert props(fake, "ada@x.io")["engagement_score"] == "30"
    assert len(fake.requests_to("/crm/v3/objects/contacts/batch/read")) == 1  # the retry did not look ada up again


def test_new_changes_during_a_5xx_backoff_wait_for_the_retry(hs, run_worker, settings, redis_conn):
    """Activity kicks the sync, but while it backs off from a 5xx nothing is sent and no budget is spent early."""
    fake, api, app = hs
    fake.add_contact("ada@x.io")
    fake.add_contact("bob@x.io")
    fake.fail_next(1, 500, path=UPDATE)
    send(api, "ada@x.io", "demo_request")
    settle(app, run_worker)
    assert len(fake.requests_to(UPDATE)) == 1
    send(api, "bob@x.io", "demo_request")
    settle(app, run_worker)
    assert len(fake.requests_to(UPDATE)) == 1  # held off until the scheduled retry
    run_scheduled(settings, redis_conn, run_worker)
    assert props(fake, "ada@x.io")["engagement_score"] == "30" and props(fake, "bob@x.io")["engagement_score"] == "30"
    assert len(fake.requests_to(UPDATE)) == 2  # both in one batch


def test_ous_sharing_a_portal_keep_each_others_level_options(
    settings, clean, tenant, other_tenant, monkeypatch, run_worker
):
    """Two OUs served by HUBSPOT_ACCESS_TOKEN write to one portal: neither's level table may erase the other's options."""
    with FakeHubSpot(tokens=[TOKEN]) as fake:
        monkeypatch.setenv("HUBSPOT_API_BASE", fake.url)
        monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", TOKEN)
        monkeypatch.setenv("LEADPULSE_DEFAULT_INTEGRATION_UNITS", "*")  # a single-team install: both orgs are ours
        app = create_app(
            dataclasses.replace(
                settings, hubspot_api_base=fake.url, hubspot_access_token=TOKEN, default_integration_units=ALL_UNITS
            )
        )
        a, b = Api(app.test_client(), tenant), Api(app.test_client(), other_tenant)
        create_levels(a)  # Cold, Warm, Hot, Very Hot
        gold = {"name": "Gold", "min_score": 50, "max_score": None, "color": "#ef4444", "order": 2}
        b_levels = create_levels(
            b, [{"name": "Bronze", "min_score": 0, "max_score": 49, "color": "#94a3b8", "order": 1}, gold]
        )
        for api in (a, b):
            published_ruleset(api, {"demo_request": 30})
        fake.add_contact("ada@a.io")
        fake.add_contact("bob@b.io")
        send(a, "ada@a.io", "demo_request", 2)  # 60: Hot
        run_worker()
        send(b, "bob@b.io", "demo_request", 2)  # 60: Gold
        run_worker()
        send(a, "ada@a.io", "demo_request", 1)  # 90: Very Hot, written after B set its options
        run_worker()
        assert props(fake, "ada@a.io")["engagement_level"] == "Very Hot"
        assert props(fake, "bob@b.io")["engagement_level"] == "Gold"
        options = lambda: [o["value"] for o in fake.properties["engagement_level"]["options"]]
        assert sorted(options()) == sorted(["Cold", "Warm", "Hot", "Very Hot", "Bronze", "Gold"])
        # B renames Gold: the old name goes (no OU uses it), A's stay, and B's contacts take the new one, though
        # neither their score nor their level changed.
        assert b.put(f"/engagement-levels/{b_levels['Gold']}", json={**gold, "name": "Platinum"}).status_code == 200
        run_worker()
        assert props(fake, "bob@b.io")["engagement_level"] == "Platinum"
        assert sorted(options()) == sorted(["Cold", "Warm", "Hot", "Very Hot", "Bronze", "Platinum"])
        assert b.get("/integrations/hubspot").json["pending"] == 0
        # A revert to the table before the rename writes the old name back; A's contact is left alone.
        updates = len(fake.requests_to(UPDATE))
        history = b.get("/engagement-levels/history").json  # newest first
        before = next(e for e in history if "Gold" in [lv["name"] for lv in e["levels"]])
        assert b.post(f"/engagement-levels/history/{before['id']}/revert").status_code == 200
        run_worker()
        assert props(fake, "bob@b.io")["engagement_level"] == "Gold"
        assert props(fake, "ada@a.io")["engagement_level"] == "Very Hot"
        sent = [i["id"] for c in fake.requests_to(UPDATE)[updates:] for i in c.body["inputs"]]
        assert sent == [fake.contact_by_email("bob@b.io")["id"]]


def test_an_option_removed_in_hubspot_is_restored_and_the_batch_goes_through(hs, run_worker):
    """A HubSpot admin deletes the Hot option: the refused batch puts the options back and is sent again, once."""
    fake, api, _ = hs
    fake.add_contact("ada@x.io")
    prop = fake.properties["engagement_level"]
    prop["options"] = [o for o in prop["options"] if o["value"] != "Hot"]
    send(api, "ada@x.io", "demo_request", 2)  # 60: Hot
    run_worker()
    assert props(fake, "ada@x.io")["engagement_level"] == "Hot"
    assert "Hot" in [o["value"] for o in fake.properties["engagement_level"]["options"]]
    assert [r.status for r in fake.requests_to(UPDATE)] == [400, 200]
    assert api.get("/integrations/hubspot").json["failed"] == 0
    # Removed again within the hour: no second repair (a value HubSpot keeps refusing must not cost 9 calls a sweep).
    prop["options"] = [o for o in fake.properties["engagement_level"]["options"] if o["value"] != "Hot"]
    fake.properties["engagement_level"]["options"] = prop["options"]
    send(api, "ada@x.io", "page_view", 1)  # 65: still Hot
    run_worker()
    assert [r.status for r in fake.requests_to(UPDATE)] == [400, 200, 400]
    assert "Hot" not in [o["value"] for o in fake.properties["engagement_level"]["options"]]
    assert "INVALID_OPTION" in api.get("/integrations/hubspot").json["last_error"]


def test_a_level_edit_reaches_the_contacts_it_renames_or_moves(hs, run_worker):
    """A connected OU: a rename, then ranges that move a lead, are written to the contacts they touch (after the
    options that hold the new name), though none of their leads had an event since."""
    fake, api, _ = hs
    fake.add_contact("ada@x.io")
    fake.add_contact("bob@x.io")
    send(api, "ada@x.io", "demo_request", 2)  # 60: Hot
    send(api, "bob@x.io", "page_view", 6)  # 30: Warm
    run_worker()
    levels = {lv["name"]: lv["id"] for lv in api.get("/engagement-levels").json["levels"]}
    options = lambda: [o["value"] for o in fake.properties["engagement_level"]["options"]]
    sent = len(fake.requests_to(UPDATE))
    assert api.put(f"/engagement-levels/{levels['Hot']}", json={"name": "On Fire"}).status_code == 200
    run_worker()
    assert props(fake, "ada@x.io")["engagement_level"] == "On Fire" and "Hot" not in options()
    calls = fake.requests_to(UPDATE)[sent:]
    assert [r.status for r in calls] == [200]  # never refused: the options came first
    assert [i["id"] for i in calls[0].body["inputs"]] == [fake.contact_by_email("ada@x.io")["id"]]
    assert api.put(f"/engagement-levels/{levels['Warm']}", json={"max_score": 29}).status_code == 200
    assert api.put(f"/engagement-levels/{levels['Hot']}", json={"min_score": 30}).status_code == 200
    run_worker()
    assert props(fake, "bob@x.io")["engagement_level"] == "On Fire"
    assert props(fake, "bob@x.io")["engagement_score"] == "30"
    assert api.get("/integrations/hubspot").json["pending"] == 0


def test_a_sync_that_lost_its_lease_makes_no_further_batch_call(
    settings, clean, tenant, monkeypatch, run_worker, redis_conn
):
    """A sync that stalled past its lease's TTL finds the OU's lease taken by another job: it stops before its next
    batch call instead of writing beside that job, and nothing is lost (the holder, or a later run, syncs the rest)."""
    from integrations import redis_keys as keys
    from worker.jobs import enqueue_hubspot_sync

    lease = keys.UNIT_RUN(kind="hubspot", unit_id=tenant.unit_id)

    class TakenOverDuringTheFirstUpdate(FakeHubSpot):
        def handle(self, request, record):
            if request.path == UPDATE and len(self.requests_to(UPDATE)) == 1:
                redis_conn.set(lease, "another-worker:1")  # this job's keeper stalled; another took the OU over
            return super().handle(request, record)

    with TakenOverDuringTheFirstUpdate(tokens=[TOKEN]) as fake:
        emails = [f"l{i:03d}@x.io" for i in range(150)]  # two batches of 100 at most
        scored_before_connecting(fake, settings, tenant, monkeypatch, run_worker, emails)
        run_worker()
        [first] = fake.requests_to(UPDATE)  # the second batch was never sent
        assert len(first.body["inputs"]) == 100
        assert redis_conn.get(lease) == b"another-worker:1"  # not released for its new holder either
        assert sum(props(fake, e).get("engagement_score") == "5" for e in emails) == 100

        redis_conn.delete(lease)  # the other holder is done (or died); the next run syncs what is left
        enqueue_hubspot_sync(redis_conn, settings.queue_name, tenant.unit_id)
        run_worker()
        assert all(props(fake, e).get("engagement_score") == "5" for e in emails)
        assert [len(r.body["inputs"]) for r in fake.requests_to(UPDATE)] == [100, 50]


def test_an_options_lock_left_by_a_killed_updater_holds_a_sync_seconds_not_minutes(clean, redis_conn):
    """The options lock is a lease: one a worker killed mid-update left lapses within its TTL, and meanwhile a caller
    waits OPTIONS_WAIT s at most (a job waiting holds its worker, which a dead worker's scoring slot may need)."""
    with FakeHubSpot(tokens=[TOKEN]) as fake:
        adapter = HubSpotAdapter(TOKEN, fake.url)
        key = HUBSPOT_OPTIONS_LOCK(account="token:" + token_key(TOKEN))
        redis_conn.set(key, "host:1:killed-mid-update", px=int(LEASE_TTL * 1000))  # as its last renewal left it
        killed = time.monotonic()
        with pytest.raises(RateLimited):
            ensure_options(redis_conn, adapter, TOKEN, ["Cold", "Hot"], set())
        assert time.monotonic() - killed < OPTIONS_WAIT + 1
        assert "engagement_level" not in fake.properties
        wait_until(
            lambda: not redis_conn.exists(key), timeout=LEASE_TTL + 1, interval=0.1, message="the lease to lapse"
        )
        ensure_options(redis_conn, adapter, TOKEN, ["Cold", "Hot"], set())
        assert [o["value"] for o in fake.properties["engagement_level"]["options"]] == ["Cold", "Hot"]
        assert not redis_conn.exists(key)  # released


def test_a_run_walks_the_ou_once_then_looks_again_from_its_start(
    settings, clean, tenant, monkeypatch, run_worker, redis_conn
):
    """Each batch reads on from the last one (a read from the OU's first lead each time grew with every batch); at the
    end the run looks again from the start, so a lead that changed behind it is written by this run, not the next."""
    from threading import Thread

    from integrations.hubspot_sync import sync_contacts
    from models.accounts import load_or_create_secret

    with FakeHubSpot(tokens=[TOKEN]) as fake:
        emails = [f"lead{n:03d}@x.io" for n in range(250)]
        # the sync the connection queues never runs: this test runs one itself
        app, app_settings = scored_before_connecting(fake, settings, tenant, monkeypatch, run_worker, emails)
        Session = app.extensions["leadpulse"].Session
        with Session() as s:
            first = s.execute(select(Lead).order_by(Lead.pk).limit(1)).scalar_one()
        fake.slow_next(1, seconds=1.0, path=UPDATE)  # the first batch's update: meanwhile its first lead changes
        secret = load_or_create_secret(Session)
        outcome = []
        run = Thread(
            target=lambda: outcome.append(sync_contacts(Session, app_settings, secret, redis_conn, tenant.unit_id))
        )
        run.start()
        fake.wait_for(lambda: len(fake.requests_to(UPDATE)) == 1)
        with Session() as s, s.begin():  # as scoring writes a new score
            s.execute(update(Lead).where(Lead.pk == first.pk).values(score=Lead.score + 5))
        run.join(30)
        calls = [[i["id"] for i in c.body["inputs"]] for c in fake.requests_to(UPDATE)]
        assert [len(c) for c in calls] == [100, 100, 50, 1]  # on from each batch; then the first lead, again
        assert calls[3] == [calls[0][0]] and outcome[0].sent == 251
        assert fake.contacts[calls[3][0]]["properties"]["engagement_score"] == "10"
        assert sorted(set(sum(calls, []))) == sorted(fake.contact_by_email(e)["id"] for e in emails)
