"""Scoring takes pending events round-robin across OUs: one OU's huge backlog (a big CSV import) never holds another
OU's event back more than a pass."""

from collections import Counter

from sqlalchemy import String, cast, func, insert, literal, select, true
from sqlalchemy.orm import aliased

from config import Settings
from models.accounts import bootstrap_tenant
from models.base import utcnow
from models.db import session_factory
from models.events import PENDING, SCORED, Event
from models.leads import Lead
from models.migrate import upgrade as db_upgrade
from models.score_batch import score_pending
from tests.conftest import Api, make_tenant
from tests.helpers import published_ruleset

LIMIT = 2000  # the default LEADPULSE_SCORE_BATCH


def numbers(count: int):
    """0 .. count-1 as a recursive CTE (PostgreSQL and SQLite alike)."""
    n = select(literal(0).label("i")).cte(f"n{count}", recursive=True)
    return n.union_all(select((n.c.i + 1).label("i")).where(n.c.i < count - 1))


def backlog(Session, event_id: int, leads: int, per_lead: int) -> int:
    """Copy the OU's one lead and event set-based: `leads` leads (with the original) and `per_lead` more pending
    events each, interleaved over the leads as a CSV import sends them. Returns the events the OU now has pending."""
    with Session() as s, s.begin():
        template = s.get(Event, event_id)
        lead, event = aliased(Lead), aliased(Event)
        n = numbers(leads - 1)
        s.execute(
            insert(Lead).from_select(
                ["org_id", "unit_id", "lead_id", "metadata", "score", "created_at", "updated_at"],
                select(
                    lead.org_id,
                    lead.unit_id,
                    lead.lead_id + "-" + cast(n.c.i, String),
                    lead.metadata_,
                    lead.score,
                    lead.created_at,
                    lead.updated_at,
                )
                .select_from(lead)
                .join(n, true())
                .where(lead.pk == template.lead_pk),
            )
        )
        m = numbers(per_lead)
        s.execute(
            insert(Event).from_select(
                ["org_id", "unit_id", "lead_pk", "event_type", "occurred_at", "received_at", "metadata", "quiet"],
                select(
                    Lead.org_id,
                    Lead.unit_id,
                    Lead.pk,
                    event.event_type,
                    event.occurred_at,
                    event.received_at,
                    event.metadata_,
                    event.quiet,
                )
                .select_from(Lead)
                .join(m, true())
                .join(event, event.id == event_id)
                .where(Lead.unit_id == template.unit_id)
                .order_by(m.c.i, Lead.pk),
            )
        )
        return s.execute(
            select(func.count()).where(Event.unit_id == template.unit_id, Event.status == PENDING)
        ).scalar()


def one_event(api, lead_id: str, event_type: str) -> int:
    r = api.post("/ingest", json={"lead_id": lead_id, "event_type": event_type})
    assert r.status_code == 202, r.json
    return int(r.json["id"])


def score_pass(Session, slot=0, slots=1, limit=LIMIT):
    with Session() as s, s.begin():
        return score_pending(s, slot=slot, slots=slots, limit=limit)


def status_of(Session, event_id: int) -> int:
    with Session() as s:
        return s.get(Event, event_id).status


def scored_by_unit(Session) -> Counter:
    with Session() as s:
        return Counter(
            dict(
                s.execute(
                    select(Event.unit_id, func.count()).where(Event.status == SCORED).group_by(Event.unit_id)
                ).all()
            )
        )


def test_a_small_ous_event_is_scored_by_the_first_pass_behind_a_large_backlog(app, tenant, other_tenant):
    Session = app.extensions["leadpulse"].Session
    big, small = Api(app.test_client(), tenant), Api(app.test_client(), other_tenant)
    published_ruleset(big, {"page_view": 1})
    published_ruleset(small, {"demo_request": 30})
    assert backlog(Session, one_event(big, "a", "page_view"), leads=2000, per_lead=10) == 20_001
    theirs = one_event(small, "b", "demo_request")  # after the whole backlog, on the lead with the highest pk

    first = score_pass(Session)
    assert status_of(Session, theirs) == SCORED
    assert small.get("/score/b").json["score"] == 30
    assert 1 < first.events <= 4 * LIMIT
    passes, total = 1, first.events
    while result := score_pass(Session).events:
        passes, total = passes + 1, total + result
    assert total == 20_002 and passes <= 20_002 // LIMIT + 2
    with Session() as s:  # every lead scored its prefixes in order, across passes, to the same end
        scores = Counter(s.execute(select(Lead.score).where(Lead.unit_id == tenant.unit_id)).scalars())
    assert scores == Counter({10: 1999, 11: 1})


def test_large_backlogs_share_each_pass_and_slots_keep_their_leads(app, settings, tenant, other_tenant):
    """Two OUs with large backlogs both progress in every pass of each slot; a third OU's event goes in the first."""
    Session = app.extensions["leadpulse"].Session
    a, c = Api(app.test_client(), tenant), Api(app.test_client(), other_tenant)
    third = Api(app.test_client(), make_tenant(settings, org="Initech", unit="West"))
    backlog(Session, one_event(a, "a", "page_view"), leads=1000, per_lead=12)
    backlog(Session, one_event(c, "c", "page_view"), leads=1000, per_lead=12)
    late = {}
    for i in range(4):  # leads of the small OU in both slots
        event_id = one_event(third, f"t{i}", "page_view")
        with Session() as s:
            late[s.get(Event, event_id).lead_pk % 2] = event_id
    for slot in (0, 1):
        before, leads_before = scored_by_unit(Session), scored_leads(Session)
        first = score_pass(Session, slot=slot, slots=2, limit=500)
        assert status_of(Session, late[slot]) == SCORED
        gained = scored_by_unit(Session) - before
        assert gained[tenant.unit_id] > 0 and gained[other_tenant.unit_id] > 0, gained
        assert sum(gained.values()) == first.events <= 4 * 500
        assert {pk % 2 for pk in scored_leads(Session) - leads_before} == {slot}


def scored_leads(Session) -> set[int]:
    with Session() as s:
        return set(s.execute(select(Event.lead_pk).where(Event.status == SCORED).distinct()).scalars())


def add_event(Session, org_id: str, unit_id: str, lead_id: str) -> int:
    """A lead of the OU (created if new) and one pending event of it."""
    with Session() as s, s.begin():
        lead = s.execute(select(Lead).where(Lead.unit_id == unit_id, Lead.lead_id == lead_id)).scalar()
        if lead is None:
            lead = Lead(org_id=org_id, unit_id=unit_id, lead_id=lead_id)
            s.add(lead)
            s.flush()
        event = Event(org_id=org_id, unit_id=unit_id, lead_pk=lead.pk, event_type="page_view", occurred_at=utcnow())
        s.add(event)
        s.flush()
        return event.id


def test_sqlite_takes_the_same_turns(tmp_path):
    """The embedded default (SQLite) runs the same statements."""
    settings = Settings(database_url=f"sqlite:///{tmp_path}/fair.db")
    db_upgrade(settings)
    Session = session_factory(settings.database_url, writer=True)
    big, small = (bootstrap_tenant(settings.database_url, org, "Main") for org in ("Big", "Small"))
    assert backlog(Session, add_event(Session, big["org_id"], big["unit_id"], "a"), leads=200, per_lead=10) == 2001
    late = add_event(Session, small["org_id"], small["unit_id"], "b")
    first = score_pass(Session, limit=200)
    assert status_of(Session, late) == SCORED and first.events <= 800
    while score_pass(Session, limit=200).events:
        pass
    with Session() as s:
        assert s.execute(select(func.count()).where(Event.status == PENDING)).scalar() == 0
