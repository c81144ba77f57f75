"""Sample data for a first run: levels, a published ruleset and a few days of events, every record remembered so it can be wiped."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.change_history import SYSTEM, Actor, record_level_change, record_ruleset_change
from models.hubspot_sync_state import request_options_sync
from models.ingest import IncomingEvent, ingest_many
from models.leads import Lead
from models.levels import EngagementLevel
from models.locks import lock_unit
from models.reclassify import refresh_primary_scores
from models.rescore import publish_ruleset
from models.scoring import PUBLISHED, Rule, Ruleset
from models.seed_records import SeedRecord

SAMPLE_DATA = Actor(SYSTEM, name="sample data")  # who seeding names when no caller is given
SEED_LEVELS = [
    ("Cold", 0, 24, "#94a3b8"),
    ("Warm", 25, 49, "#fbbf24"),
    ("Hot", 50, 74, "#f97316"),
    ("Very Hot", 75, None, "#ef4444"),
]
SEED_RULES = {
    "page_view": 5,
    "pricing_page_view": 15,
    "email_open": 3,
    "email_click": 8,
    "webinar_attended": 20,
    "demo_request": 40,
    "unsubscribe": -25,
}
# (lead, name, [(days ago, event type), ...]): a spread that lands in every level.
SEED_LEADS = [
    (
        "seed-ada",
        "Ada Lovelace",
        [(4, "page_view"), (3, "pricing_page_view"), (2, "webinar_attended"), (1, "email_click"), (0, "demo_request")],
    ),
    (
        "seed-grace",
        "Grace Hopper",
        [(4, "email_open"), (3, "page_view"), (2, "pricing_page_view"), (1, "email_click"), (0, "webinar_attended")],
    ),
    ("seed-alan", "Alan Turing", [(3, "page_view"), (2, "email_open"), (1, "pricing_page_view"), (0, "page_view")]),
    (
        "seed-katherine",
        "Katherine Johnson",
        [(4, "webinar_attended"), (2, "demo_request"), (1, "pricing_page_view"), (0, "page_view")],
    ),
    ("seed-linus", "Linus Pauling", [(3, "email_open"), (1, "page_view")]),
    ("seed-margaret", "Margaret Hamilton", [(4, "demo_request"), (3, "email_click"), (1, "unsubscribe")]),
]


class SeedRefused(Exception):
    """Seeding would change the OU's own data."""


@dataclass
class SeedResult:
    levels_created: list[str] = field(default_factory=list)
    ruleset_id: str | None = None
    leads: list[str] = field(default_factory=list)
    events: int = 0


def email_of(lead_id: str) -> str:
    return f"{lead_id.removeprefix('seed-')}@example.com"


def seed_unit(
    session: Session, org_id: str, unit_id: str, actor: Actor = SAMPLE_DATA, now: datetime | None = None
) -> SeedResult:
    """Idempotent: levels only where the OU has none, one demo ruleset, and events with fixed keys (a repeat is a duplicate)."""
    now = now or utcnow()
    lock_unit(session, unit_id)
    out = SeedResult()
    remember = []
    if not session.execute(
        select(func.count()).select_from(EngagementLevel).where(EngagementLevel.unit_id == unit_id)
    ).scalar():
        for order, (name, lo, hi, color) in enumerate(SEED_LEVELS, 1):
            level = EngagementLevel(
                org_id=org_id, unit_id=unit_id, name=name, min_score=lo, max_score=hi, color=color, order=order
            )
            session.add(level)
            session.flush()
            remember.append(("level", level.id))
            out.levels_created.append(name)
        record_level_change(session, unit_id, actor, "seed")
        request_options_sync(session, unit_id)
    seeded = select(SeedRecord.record_id).where(SeedRecord.unit_id == unit_id, SeedRecord.kind == "ruleset")
    ruleset = session.execute(select(Ruleset).where(Ruleset.id.in_(seeded))).scalar()
    if ruleset is None:
        primary_exists = session.execute(
            select(Ruleset.id).where(Ruleset.unit_id == unit_id, Ruleset.is_primary.is_(True))
        ).first()
        if primary_exists is None and session.execute(select(Lead.pk).where(Lead.unit_id == unit_id).limit(1)).first():
            # A primary demo ruleset would rescore real leads (and move them in HubSpot and Slack).
            raise SeedRefused(
                "this organization unit has leads but no primary ruleset: seeding would rescore them; "
                "make one of your rulesets primary first, or seed an empty organization unit"
            )
        ruleset = Ruleset(
            org_id=org_id, unit_id=unit_id, name="Demo engagement (seed)", is_primary=primary_exists is None
        )
        session.add(ruleset)
        session.flush()
        for event_type, weight in SEED_RULES.items():
            session.add(
                Rule(
                    org_id=org_id,
                    unit_id=unit_id,
                    ruleset_id=ruleset.id,
                    event_type=event_type,
                    weight=weight,
                    created_by=actor.id,
                )
            )
        remember.append(("ruleset", ruleset.id))
    out.ruleset_id = ruleset.id
    if ruleset.status != PUBLISHED:
        session.flush()
        publish_ruleset(session, ruleset)
        record_ruleset_change(session, ruleset, actor, "publish")
    events = []
    for lead_id, _, story in SEED_LEADS:
        for n, (days_ago, event_type) in enumerate(story):
            at = (now - timedelta(days=days_ago)).replace(microsecond=0) - timedelta(minutes=5 * (len(story) - n))
            events.append(
                IncomingEvent(
                    event_type=event_type,
                    occurred_at=at,
                    metadata={"seed": True, "channel": "demo"},
                    lead_id=lead_id,
                    aliases=[("email", email_of(lead_id))],
                    idempotency_key=f"seed:{unit_id}:{lead_id}:{n}",
                )
            )
    results = ingest_many(session, org_id, unit_id, events)
    out.events = sum(1 for r in results if not r.duplicate)
    for lead_id, name, _ in SEED_LEADS:
        lead = session.execute(select(Lead).where(Lead.unit_id == unit_id, Lead.lead_id == lead_id)).scalar_one()
        lead.metadata_ = {**(lead.metadata_ or {}), "name": name, "seed": True}
        remember.append(("lead", lead_id))
        out.leads.append(lead_id)
    known = set(
        session.execute(select(SeedRecord.kind, SeedRecord.record_id).where(SeedRecord.unit_id == unit_id)).all()
    )
    session.add_all(SeedRecord(kind=k, record_id=r, unit_id=unit_id) for k, r in remember if (k, r) not in known)
    return out


def wipe_seed(session: Session, unit_id: str, actor: Actor = SAMPLE_DATA) -> dict:
    """Remove exactly what seeding created (leads with their events and scores, the demo ruleset, seeded levels)."""
    lock_unit(session, unit_id)
    records = session.execute(select(SeedRecord).where(SeedRecord.unit_id == unit_id)).scalars().all()
    ids = {kind: [r.record_id for r in records if r.kind == kind] for kind in ("lead", "ruleset", "level")}
    leads = (
        session.execute(delete(Lead).where(Lead.unit_id == unit_id, Lead.lead_id.in_(ids["lead"]))).rowcount
        if ids["lead"]
        else 0
    )
    rulesets = (
        session.execute(delete(Ruleset).where(Ruleset.unit_id == unit_id, Ruleset.id.in_(ids["ruleset"]))).rowcount
        if ids["ruleset"]
        else 0
    )
    levels = 0
    own_leads = session.execute(select(Lead.pk).where(Lead.unit_id == unit_id).limit(1)).first()
    if ids["level"] and own_leads is None:  # levels the OU's own leads sit in stay: they may rely on them
        levels = session.execute(delete(EngagementLevel).where(EngagementLevel.id.in_(ids["level"]))).rowcount
        record_level_change(session, unit_id, actor, "wipe-seed")
        request_options_sync(session, unit_id)
    else:
        ids["level"] = []
    session.execute(delete(SeedRecord).where(SeedRecord.unit_id == unit_id, SeedRecord.kind != "level"))
    if ids["level"]:
        session.execute(delete(SeedRecord).where(SeedRecord.unit_id == unit_id, SeedRecord.kind == "level"))
    if rulesets:
        refresh_primary_scores(session, unit_id)
    return {"leads_deleted": leads, "rulesets_deleted": rulesets, "levels_deleted": levels}
