"""Set-based ingest and group commit: many events, few statements, same answers as one at a time."""
import threading
from datetime import datetime, timezone

from sqlalchemy import event as sa_event, func, select

from models.events import Event
from models.ingest import IncomingEvent, ingest_many
from models.leads import Lead, LeadAlias
from webapp.group_commit import GroupCommitter

T = datetime(2025, 1, 1, tzinfo=timezone.utc)


def ev(et="x", lead_id=None, aliases=(), key=None):
    return IncomingEvent(event_type=et, occurred_at=T, lead_id=lead_id, aliases=list(aliases), idempotency_key=key)


def test_batch_resolves_identities_and_dedupes(app, tenant):
    Session = app.extensions["leadpulse"].Session
    email = ("email", "ada@x.io")
    cookie = ("cookie", "c1")
    with Session() as s, s.begin():
        first = ingest_many(s, tenant.org_id, tenant.unit_id, [ev(lead_id="known", key="k0")])
    batch = [
        ev(aliases=[email], key="k1"),            # new lead A
        ev(aliases=[cookie, email]),              # same new lead A, through the shared email
        ev(aliases=[cookie]),                     # A again, through the cookie it just brought
        ev(aliases=[("email", "bob@x.io")]),      # new lead B
        ev(lead_id="known", aliases=[("phone", "+1555")], key="k2"),
        ev(lead_id="fresh"),                      # new lead by id
        ev(lead_id="fresh", key="k1"),            # repeat of k1 inside the batch
        ev(lead_id="other", key="k0"),            # repeat of an already stored key
    ]
    statements = []

    def count(*_a, **_k):
        statements.append(1)

    with Session() as s, s.begin():
        engine = s.get_bind()
        sa_event.listen(engine, "before_cursor_execute", count)
        try:
            out = ingest_many(s, tenant.org_id, tenant.unit_id, batch)
        finally:
            sa_event.remove(engine, "before_cursor_execute", count)
    a = out[0].lead_id
    assert out[1].lead_id == a and out[2].lead_id == a and out[3].lead_id not in (a, "known")
    assert out[4].lead_id == "known" and out[5].lead_id == "fresh"
    assert [r.duplicate for r in out] == [False, False, False, False, False, False, True, True]
    assert out[6].event_id == out[0].event_id and out[6].lead_id == a
    assert out[7].event_id == first[0].event_id and out[7].lead_id == "known"
    assert len(statements) <= 10  # a handful of statements for the whole batch, not one per event
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
