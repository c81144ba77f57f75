"""Set-based ingest and group commit: many events, few statements, same answers as one at a time."""

import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, text

from models.events import Event
from models.ingest import IncomingEvent, ingest_many
from models.leads import Lead, LeadAlias
from tests.helpers import statements_sent
from webapp.group_commit import GroupCommitter

T = datetime(2025, 1, 1, tzinfo=UTC)


def ev(et="x", lead_id=None, aliases=(), key=None):
    return IncomingEvent(event_type=et, occurred_at=T, lead_id=lead_id, aliases=list(aliases), idempotency_key=key)


def test_batch_resolves_identities_and_dedupes(app, tenant):
    Session = app.extensions["leadpulse"].Session
    email = ("email", "ada@x.io")
    cookie = ("cookie", "c1")
    with Session() as s, s.begin():
        first = ingest_many(s, tenant.org_id, tenant.unit_id, [ev(lead_id="known", key="k0")])
    batch = [
        ev(aliases=[email], key="k1"),  # new lead A
        ev(aliases=[cookie, email]),  # same new lead A, through the shared email
        ev(aliases=[cookie]),  # A again, through the cookie it just brought
        ev(aliases=[("email", "bob@x.io")]),  # new lead B
        ev(lead_id="known", aliases=[("phone", "+1555")], key="k2"),
        ev(lead_id="fresh"),  # new lead by id
        ev(lead_id="fresh", key="k1"),  # repeat of k1 inside the batch
        ev(lead_id="other", key="k0"),  # repeat of an already stored key
    ]
    with Session() as s, s.begin(), statements_sent() as statements:
        out = ingest_many(s, tenant.org_id, tenant.unit_id, batch)
    a = out[0].lead_id
    assert out[1].lead_id == a and out[2].lead_id == a and out[3].lead_id not in (a, "known")
    assert out[4].lead_id == "known" and out[5].lead_id == "fresh"
    assert [r.duplicate for r in out] == [False, False, False, False, False, False, True, True]
    assert out[6].event_id == out[0].event_id and out[6].lead_id == a
    assert out[7].event_id == first[0].event_id and out[7].lead_id == "known"
    assert 2 <= len(statements) <= 10  # a handful of statements for the whole batch, not one per event
    with Session() as s:
        assert s.execute(select(func.count()).select_from(Event)).scalar() == 7
        # known, A, B, fresh, and "other": insert-first resolves a repeat's lead before learning it is a repeat
        assert s.execute(select(func.count()).select_from(Lead)).scalar() == 5
        aliases = dict(s.execute(select(LeadAlias.value, Lead.lead_id).join(Lead, Lead.pk == LeadAlias.lead_pk)).all())
    assert aliases == {"ada@x.io": a, "c1": a, "bob@x.io": out[3].lead_id, "+1555": "known"}


def test_group_commit_from_many_threads(app, tenant):
    Session = app.extensions["leadpulse"].Session
    commits = []
    committer = GroupCommitter(Session, after_commit=lambda: commits.append(1))
    results = {}

    def send(n):
        results[n] = committer.submit(tenant.org_id, tenant.unit_id, [ev(lead_id=f"l{n % 7}", key=f"key-{n % 150}")])[0]

    threads = [threading.Thread(target=send, args=(n,)) for n in range(300)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 300
    assert sum(not r.duplicate for r in results.values()) == 150
    by_key = {}
    for n, r in results.items():
        by_key.setdefault(n % 150, set()).add(r.event_id)
    assert all(len(ids) == 1 for ids in by_key.values())  # every repeat answered with the original id
    assert 1 <= len(commits) <= 300
    with Session() as s:
        assert s.execute(select(func.count()).select_from(Event)).scalar() == 150


def test_wait_woken_returns_once_scoring_was_woken_for_every_commit(app, tenant):
    """The answer does not wait for the wake-up; wait_woken does, for every commit made before it was called."""
    release, woken = threading.Event(), []
    committer = GroupCommitter(
        app.extensions["leadpulse"].Session, after_commit=lambda: (release.wait(10), woken.append(1))
    )
    assert committer.wait_woken(timeout=0.01)  # nothing committed: nothing to wait for
    committer.submit(tenant.org_id, tenant.unit_id, [ev(lead_id="a", key="w-1")])
    assert not committer.wait_woken(timeout=0.2) and woken == []  # answered; the wake-up still blocked
    release.set()
    assert committer.wait_woken(timeout=10) and woken
    committer.submit(tenant.org_id, tenant.unit_id, [ev(lead_id="a", key="w-1")])  # a duplicate wakes nothing
    assert committer.wait_woken(timeout=0.01)


def test_concurrent_http_ingest_is_grouped_and_exact(api, app, run_worker):
    from tests.helpers import leads_by_id, published_ruleset

    published_ruleset(api, {"x": 1})
    codes = []

    def send(n):
        r = api.post("/ingest", json={"lead_id": f"l{n % 10}", "event_type": "x", "event_id": f"e{n % 200}"})
        codes.append((r.status_code, r.json["duplicate"]))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(400)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(codes)) == [(202, False), (202, True)]
    assert sum(1 for c in codes if not c[1]) == 200
    run_worker()
    assert sum(lead["score"] for lead in leads_by_id(api).values()) == 200


def test_identity_is_the_same_however_events_are_batched(app, tenant):
    Session = app.extensions["leadpulse"].Session
    x, e, c = ("cookie", "x"), ("email", "e@x.io"), ("cookie", "c")
    with Session() as s, s.begin():
        out = ingest_many(s, tenant.org_id, tenant.unit_id, [ev(lead_id="L", aliases=[x]), ev(aliases=[x])])
        assert [r.lead_id for r in out] == ["L", "L"]  # the lead_id event claims x first
        ingest_many(s, tenant.org_id, tenant.unit_id, [ev(lead_id="X", aliases=[e])])
        out = ingest_many(s, tenant.org_id, tenant.unit_id, [ev(aliases=[e, c]), ev(aliases=[c])])
        assert [r.lead_id for r in out] == ["X", "X"]  # c joins X through e, then finds X
    with Session() as s:
        owners = dict(s.execute(select(LeadAlias.value, Lead.lead_id).join(Lead, Lead.pk == LeadAlias.lead_pk)).all())
    assert owners == {"x": "L", "e@x.io": "X", "c": "X"}


def test_two_web_processes_seeing_new_visitors_agree_on_one_lead(app, tenant):
    """Two committers (as two gunicorn workers) race on first sight of the same aliases."""
    Session = app.extensions["leadpulse"].Session
    committers = [GroupCommitter(Session), GroupCommitter(Session)]
    visitors = 150

    def send(n):
        v = n % visitors
        aliases = [("cookie", f"ck-{v}")] if n % 2 else [("cookie", f"ck-{v}"), ("email", f"v{v}@x.io")]
        committers[n % 2].submit(tenant.org_id, tenant.unit_id, [ev(aliases=aliases)])

    threads = [threading.Thread(target=send, args=(n,)) for n in range(visitors * 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Session() as s:
        assert s.execute(select(func.count()).select_from(Lead)).scalar() == visitors
        per_lead = s.execute(select(Event.lead_pk, func.count()).group_by(Event.lead_pk)).all()
    assert sorted(n for _, n in per_lead) == [4] * visitors


def test_a_lead_created_meanwhile_by_another_transaction_gets_the_events(app, tenant):
    """The one-statement find-or-create skips a lead another transaction inserted first; the fallback finds it."""
    Session = app.extensions["leadpulse"].Session
    first = Session()
    first.begin()
    ingest_many(first, tenant.org_id, tenant.unit_id, [ev(lead_id="raced", key="a")])  # holds the new lead's key
    second_pid = []
    out = []

    def second():
        with Session() as s, s.begin():
            second_pid.append(s.execute(select(func.pg_backend_pid())).scalar())
            out.extend(
                ingest_many(s, tenant.org_id, tenant.unit_id, [ev(lead_id="raced", key="b"), ev(lead_id="fresh")])
            )

    t = threading.Thread(target=second)
    t.start()
    with Session() as watcher:  # await the second transaction waiting on the first's uncommitted lead
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            watcher.rollback()
            if (
                second_pid
                and watcher.execute(
                    text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :p"), {"p": second_pid[0]}
                ).scalar()
                == "Lock"
            ):
                break
        else:
            raise AssertionError("the second transaction never waited on the first")
    first.commit()
    first.close()
    t.join(30)
    assert [(r.lead_id, r.duplicate) for r in out] == [("raced", False), ("fresh", False)]
    with Session() as s:
        leads = dict(s.execute(select(Lead.lead_id, Lead.pk)).all())
        events = s.execute(select(Event.idempotency_key, Event.lead_pk).order_by(Event.id)).all()
    assert sorted(leads) == ["fresh", "raced"]
    assert [(k, pk) for k, pk in events] == [("a", leads["raced"]), ("b", leads["raced"]), (None, leads["fresh"])]


@pytest.mark.parametrize("document_chars", [400, None], ids=["split", "one-document"])
def test_a_batch_too_big_for_one_json_document_is_split_and_stored_whole(app, tenant, monkeypatch, document_chars):
    """Big metadata splits the insert (jsonb refuses documents over 256 MB); either way ids follow the input order
    although rows are inserted in key order."""
    import models.ingest

    if document_chars:
        monkeypatch.setattr(models.ingest, "MAX_DOCUMENT_CHARS", document_chars)
    Session = app.extensions["leadpulse"].Session
    batch = [ev(lead_id=f"l{i % 3}", key=f"k{(7 * i) % 20:02d}" if i % 4 else None) for i in range(20)]
    for i, e in enumerate(batch):
        e.metadata = {"n": i, "pad": "x" * 100}
    with Session() as s, s.begin():
        ingest_many(s, tenant.org_id, tenant.unit_id, [ev(lead_id="l0", key="k07")])  # stored before: a duplicate below
        out = ingest_many(s, tenant.org_id, tenant.unit_id, batch)
        stored = s.execute(
            select(Event.id, Event.metadata_["n"].as_integer())
            .where(Event.idempotency_key.is_distinct_from("k07"))
            .order_by(Event.id)
        ).all()
    assert [r.duplicate for r in out] == [e.idempotency_key == "k07" for e in batch]
    assert [n for _, n in stored] == [i for i, e in enumerate(batch) if e.idempotency_key != "k07"]
    assert [r.event_id for r in out if not r.duplicate] == [event_id for event_id, _ in stored]


def test_naive_times_are_utc_and_an_empty_batch_is_nothing(app, tenant):
    Session = app.extensions["leadpulse"].Session
    with Session() as s, s.begin():
        s.execute(text("SET LOCAL TIME ZONE 'America/New_York'"))
        naive = IncomingEvent(event_type="x", occurred_at=datetime(2025, 1, 1, 10, 0), lead_id="n")
        [r] = ingest_many(s, tenant.org_id, tenant.unit_id, [naive])
        assert ingest_many(s, tenant.org_id, tenant.unit_id, []) == []
    with Session() as s:
        assert s.get(Event, r.event_id).occurred_at == datetime(2025, 1, 1, 10, 0, tzinfo=UTC)


def test_a_request_that_times_out_is_never_written(app, tenant, settings):
    """A queued request whose caller gave up is dropped; one already being written is waited for."""
    from sqlalchemy import text

    from models.db import get_engine

    Session = app.extensions["leadpulse"].Session
    committer = GroupCommitter(Session)
    blocker = get_engine(settings.database_url).connect()
    tx = blocker.begin()
    blocker.execute(
        text(
            "INSERT INTO leads (org_id, unit_id, lead_id, metadata, score, created_at, updated_at) "
            "VALUES (:o, :u, 'L', '{}', 0, now(), now())"
        ),
        {"o": tenant.org_id, "u": tenant.unit_id},
    )
    first = {}
    stuck = threading.Thread(
        target=lambda: first.setdefault(
            "r", committer.submit(tenant.org_id, tenant.unit_id, [ev(lead_id="L", key="a")])
        )
    )
    stuck.start()
    from concurrent.futures import TimeoutError as FutureTimeout

    import pytest

    from tests.conftest import wait_until

    # pg_locks is the whole server's: only a wait on this blocker says the batch is stuck (any other session's wait
    # let "b" join the batch before it started, and the test then waited on itself for ever).
    waiting = "SELECT count(*) FROM pg_locks WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid))"
    wait_until(
        lambda: blocker.execute(text(waiting)).scalar() > 0,
        message="the batch to wait on the uncommitted lead",
    )
    with pytest.raises(FutureTimeout):
        committer.submit(tenant.org_id, tenant.unit_id, [ev(lead_id="M", key="b")], timeout=0.3)
    tx.commit()
    blocker.close()
    stuck.join()
    assert first["r"][0].lead_id == "L"
    with Session() as s:
        keys = set(s.execute(select(Event.idempotency_key)).scalars())
    assert keys == {"a"}  # "b" was answered 503 and is not stored


def test_a_hung_redis_never_delays_the_202(app, tenant):
    """Waking scoring runs off the committer thread: a Redis that never answers costs ingest nothing."""
    import socket
    import time

    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    port = hung.getsockname()[1]
    from redis import Redis

    from worker.jobs import kick_scoring

    slow = Redis(host="127.0.0.1", port=port, socket_timeout=3)
    committer = GroupCommitter(app.extensions["leadpulse"].Session, after_commit=lambda: kick_scoring(slow, "q", 2))
    latencies = []
    for n in range(4):
        t0 = time.perf_counter()
        committer.submit(tenant.org_id, tenant.unit_id, [ev(lead_id=f"l{n}")])
        latencies.append(time.perf_counter() - t0)
    hung.close()
    assert max(latencies) < 1.0, latencies


def test_event_ids_come_from_the_events_id_sequence(app, tenant):
    """The insert names the id sequence as a constant; a migration renaming it must fail here, not in production."""
    from models.ingest import EVENTS_ID_SEQUENCE

    Session = app.extensions["leadpulse"].Session
    with Session() as s, s.begin():
        assert (
            s.execute(text("SELECT pg_get_serial_sequence('events', 'id')")).scalar() == f"public.{EVENTS_ID_SEQUENCE}"
        )
        [first, second] = ingest_many(s, tenant.org_id, tenant.unit_id, [ev(lead_id="ada"), ev(lead_id="ada")])
        assert second.event_id == first.event_id + 1
        assert s.execute(text(f"SELECT last_value FROM {EVENTS_ID_SEQUENCE}")).scalar() == second.event_id


def test_an_unavailable_database_fails_a_group_at_once_not_one_by_one(settings):
    """A batch that cannot reach the database answers all its requests with the error (a 503), instead of retrying
    each alone, which multiplied the wait by the batch size."""
    from concurrent.futures import ThreadPoolExecutor

    import pytest
    from sqlalchemy import create_engine
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.orm import sessionmaker

    from tests.conftest import wait_until

    nowhere = sessionmaker(bind=create_engine(settings.database_url.rsplit("/", 1)[0] + "/leadpulse_no_such_db"))
    opened, first_may_fail = [], threading.Event()

    def Session():
        opened.append(1)
        if len(opened) == 1:
            first_may_fail.wait(10)  # hold the first batch until the next four requests are queued behind it
        return nowhere()

    committer = GroupCommitter(Session)
    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(committer.submit, "o", "u", [ev(lead_id="a")])
        wait_until(lambda: opened, message="the first batch to start")
        rest = [pool.submit(committer.submit, "o", "u", [ev(lead_id=f"b{i}")]) for i in range(4)]
        wait_until(lambda: committer._queue.qsize() == 4, message="four requests queued")
        first_may_fail.set()
        for future in [first, *rest]:
            with pytest.raises(OperationalError):
                future.result(10)
    assert len(opened) == 2  # the lone first batch, then the four together


def test_ingest_commits_while_requests_hold_every_pooled_connection(settings, tenant):
    """The committer has connections of its own: requests that exhaust the pool cannot starve the commit."""
    import os
    from dataclasses import replace

    from sqlalchemy import create_engine

    from models import db
    from tests.conftest import Api
    from webapp import create_app

    url = settings.database_url + "?application_name=busy-pool"
    engine = db._engines[(os.getpid(), url)] = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        api = Api(create_app(replace(settings, database_url=url)).test_client(), tenant)
        assert api.post("/ingest", json={"lead_id": "ada", "event_type": "x"}).status_code == 202  # credential cached
        with engine.connect():  # every request connection is taken
            r = api.post("/ingest", json={"lead_id": "ada", "event_type": "y"})
        assert r.status_code == 202 and r.json["lead_id"] == "ada"
    finally:
        db._engines.pop((os.getpid(), url)).dispose()
        db._engines.pop((os.getpid(), "committer:" + url)).dispose()
