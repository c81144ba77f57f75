"""Rebuilding one ruleset's scores for a whole OU from stored events (publish, unpublish), and the one per-lead
computation that a rescore preview counts instead of writing (models/rescore_preview.py, docs/previews.md)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.dialect import insert_for
from models.engine import DECAY, Delta, RulesetSpec, score_events
from models.event_queries import SCORING_COLUMNS, stored_spec, stream_in_lead_order
from models.events import SCORED, Event, ScoreDelta
from models.locks import lock_unit_leads
from models.reclassify import refresh_primary_scores
from models.scoring import PUBLISHED, LeadScore, Rule, Ruleset
from models.tenancy import OrgUnit
from models.unit_context import ruleset_spec, snapshot_rules

CHUNK = 5000


@dataclass(frozen=True)
class LeadRescore:
    lead_pk: int
    score: int | None  # None: no event of the lead scores under the ruleset, so publishing stores no score for it
    deltas: list[Delta]


def clear_ruleset_scores(session: Session, ruleset: Ruleset) -> None:
    session.execute(delete(ScoreDelta).where(ScoreDelta.ruleset_id == ruleset.id))
    session.execute(delete(LeadScore).where(LeadScore.ruleset_id == ruleset.id))


def current_rules(session: Session, ruleset_id: str) -> list[dict]:
    """The ruleset's rules as publishing would freeze them now (a preview starts from the same list)."""
    rules = session.execute(select(Rule).where(Rule.ruleset_id == ruleset_id).order_by(Rule.created_at)).scalars()
    return snapshot_rules(rules)


def allows_negative(session: Session, unit_id: str) -> bool:
    return bool(session.execute(select(OrgUnit.allow_negative_scores).where(OrgUnit.id == unit_id)).scalar())


def publish_ruleset(session: Session, ruleset: Ruleset) -> int:
    """Freeze the current rules as the published ones and rescore the OU with them; returns leads scored."""
    ruleset.status, ruleset.published_at = PUBLISHED, utcnow()
    ruleset.published_rules = current_rules(session, ruleset.id)
    session.flush()
    return rescore_ruleset(session, ruleset)


def rescored_leads(session: Session, unit_id: str, spec: RulesetSpec, allow_negative: bool) -> Iterator[LeadRescore]:
    """Each lead's score under spec from its scored events, in lead_pk order, one lead in memory at a time.

    The one computation behind publishing (which writes what it yields) and a rescore preview (which only counts
    it): the preview's numbers are publishing's because there is no second implementation to drift.
    """
    rows = stream_in_lead_order(
        session,
        select(*SCORING_COLUMNS)
        .where(Event.unit_id == unit_id, Event.status == SCORED, Event.event_type.in_([*spec.rules, DECAY]))
        .order_by(Event.lead_pk, Event.occurred_at, Event.id),
    )
    yield from scored_leads(rows, spec, allow_negative)


def scored_leads(rows, spec: RulesetSpec, allow_negative: bool) -> Iterator[LeadRescore]:
    """Rows of SCORING_COLUMNS in (lead, time, id) order, scored lead by lead under spec alone."""
    for n, (lead_pk, group) in enumerate(groupby(rows, key=lambda r: r.lead_pk), 1):
        # A scored DECAY is one its lead's scored activity leaves standing (models/score_batch.py voids the others).
        after, deltas = score_events((stored_spec(r) for r in group), [spec], {}, allow_negative)
        yield LeadRescore(lead_pk, after.get(spec.id), deltas)
        if n % CHUNK == 0:
            cooperate()


def cooperate() -> None:
    """Under gevent (`leadpulse web`) a long replay in a request lets the process's other requests run now and then;
    elsewhere time.sleep(0) costs next to nothing."""
    time.sleep(0)


def rescore_ruleset(session: Session, ruleset: Ruleset) -> int:
    """Replace the ruleset's scores with ones computed from every scored event; returns leads scored."""
    unit_id = ruleset.unit_id
    lock_unit_leads(session, unit_id)
    clear_ruleset_scores(session, ruleset)
    spec = ruleset_spec(ruleset)
    leads = write_scores(
        session, unit_id, spec, rescored_leads(session, unit_id, spec, allows_negative(session, unit_id))
    )
    if ruleset.is_primary:
        refresh_primary_scores(session, unit_id)
    return leads


def write_scores(session: Session, unit_id: str, spec: RulesetSpec, leads: Iterable[LeadRescore]) -> int:
    """Store what scoring each lead under spec gave, in chunks; returns leads with a score. The caller has cleared
    what it replaces."""
    now = utcnow()
    scores, deltas, scored = [], [], 0
    for lead in leads:
        if lead.score is not None:
            scored += 1
            scores.append(
                dict(lead_pk=lead.lead_pk, ruleset_id=spec.id, unit_id=unit_id, score=lead.score, updated_at=now)
            )
        deltas += [
            dict(
                event_id=d.event_id,
                ruleset_id=d.ruleset_id,
                lead_pk=lead.lead_pk,
                rule_id=d.rule_id,
                delta=d.delta,
                score_after=d.score_after,
            )
            for d in lead.deltas
        ]
        if len(deltas) >= CHUNK:
            _flush(session, scores, deltas)
    _flush(session, scores, deltas)
    return scored


def rescore_unit(session: Session, unit_id: str) -> int:
    """Rebuild every published ruleset of the OU from stored events (the floor changed); returns leads scored."""
    lock_unit_leads(session, unit_id)
    rulesets = (
        session.execute(
            select(Ruleset).where(Ruleset.unit_id == unit_id, Ruleset.status == PUBLISHED).order_by(Ruleset.created_at)
        )
        .scalars()
        .all()
    )
    return sum(rescore_ruleset(session, rs) for rs in rulesets)


def _flush(session: Session, scores: list, deltas: list) -> None:
    if scores:
        session.execute(insert_for(session, LeadScore), scores)
    if deltas:
        session.execute(insert_for(session, ScoreDelta), deltas)
    scores.clear()
    deltas.clear()
