"""Rebuilding one ruleset's scores for a whole OU from stored events (publish, unpublish)."""

from __future__ import annotations

from itertools import groupby

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.dialect import insert_for
from models.engine import DECAY, RulesetSpec, score_events
from models.events import SCORED, Event, ScoreDelta
from models.locks import lock_unit_leads
from models.reclassify import refresh_primary_scores
from models.score_batch import scoring_rows, spec_of
from models.scoring import PUBLISHED, LeadScore, Rule, Ruleset
from models.tenancy import OrgUnit
from models.unit_context import ruleset_spec, snapshot_rules

CHUNK = 5000


def clear_ruleset_scores(session: Session, ruleset: Ruleset) -> None:
    session.execute(delete(ScoreDelta).where(ScoreDelta.ruleset_id == ruleset.id))
    session.execute(delete(LeadScore).where(LeadScore.ruleset_id == ruleset.id))


def publish_ruleset(session: Session, ruleset: Ruleset) -> int:
    """Freeze the current rules as the published ones and rescore the OU with them; returns leads scored."""
    rules = session.execute(select(Rule).where(Rule.ruleset_id == ruleset.id).order_by(Rule.created_at)).scalars().all()
    ruleset.status, ruleset.published_at, ruleset.published_rules = PUBLISHED, utcnow(), snapshot_rules(rules)
    session.flush()
    return rescore_ruleset(session, ruleset)


def rescore_ruleset(session: Session, ruleset: Ruleset) -> int:
    """Replace the ruleset's scores with ones computed from every scored event; returns leads scored."""
    unit_id = ruleset.unit_id
    lock_unit_leads(session, unit_id)
    clear_ruleset_scores(session, ruleset)
    spec = ruleset_spec(ruleset)
    allow_negative = session.execute(select(OrgUnit.allow_negative_scores).where(OrgUnit.id == unit_id)).scalar()
    rows = session.execute(
        scoring_rows(Event.unit_id == unit_id, Event.status == SCORED, Event.event_type.in_([*spec.rules, DECAY]))
        .order_by(Event.lead_pk, Event.occurred_at, Event.id)
        .execution_options(yield_per=CHUNK)
    )
    leads = write_scores(session, unit_id, spec, rows, bool(allow_negative))
    if ruleset.is_primary:
        refresh_primary_scores(session, unit_id)
    return leads


def write_scores(session: Session, unit_id: str, spec: RulesetSpec, rows, allow_negative: bool) -> int:
    """Score one ruleset from events in (lead, time, id) order, writing its scores and deltas in chunks; returns leads
    scored. The caller has cleared what it replaces."""
    now = utcnow()
    scores, deltas, leads = [], [], 0
    for lead_pk, group in groupby(rows, key=lambda r: r.lead_pk):
        # A scored DECAY is one its lead's scored activity leaves standing (models/score_batch.py voids the others).
        after, lead_deltas = score_events((spec_of(r) for r in group), [spec], {}, allow_negative)
        if spec.id in after:
            leads += 1
            scores.append(
                dict(lead_pk=lead_pk, ruleset_id=spec.id, unit_id=unit_id, score=after[spec.id], updated_at=now)
            )
        deltas += [
            dict(
                event_id=d.event_id,
                ruleset_id=d.ruleset_id,
                lead_pk=lead_pk,
                rule_id=d.rule_id,
                delta=d.delta,
                score_after=d.score_after,
            )
            for d in lead_deltas
        ]
        if len(deltas) >= CHUNK:
            _flush(session, scores, deltas)
    _flush(session, scores, deltas)
    return leads


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
