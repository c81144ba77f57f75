"""Rescoring leads from their stored events by the ordinary scoring path (after events are deleted or merged)."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.orm import Session

from models.engine import DECAY, RulesetSpec
from models.event_queries import SCORING_COLUMNS
from models.events import PENDING, SCORED, SUPPRESSED, Event, ScoreDelta
from models.leads import Lead
from models.locks import lock_leads, lock_unit
from models.reclassify import reclassify_unit
from models.rescore import scored_leads, write_scores
from models.scoring import LeadScore
from models.unit_context import load_contexts


def delete_events(session: Session, unit_id: str, ids: list[int]) -> tuple[list[int], set[int]]:
    """Delete these events of the OU; returns (ids deleted, lead pks to rescore)."""
    lock_unit(session, unit_id)  # exclusive: no scoring batch of this OU runs in between
    found = session.execute(select(Event.id, Event.lead_pk).where(Event.unit_id == unit_id, Event.id.in_(ids))).all()
    if not found:
        return [], set()
    lead_pks = {r.lead_pk for r in found}
    lock_leads(session, lead_pks)
    session.execute(delete(Event).where(Event.id.in_([r.id for r in found])))  # their deltas go by cascade
    replay_leads(session, unit_id, lead_pks)
    return [r.id for r in found], lead_pks


def replay_leads(session: Session, unit_id: str, lead_pks: set[int]) -> None:
    """Clear these leads' scores and put their scored events back to pending: the next batch scores each from zero.

    The caller holds the OU lock. A lead left without events goes back to zero and to the level zero falls in. DECAY
    events a deleted event had voided are judged again, and the lead's last activity is what scoring finds.
    """
    ctx = load_contexts(session, {unit_id})[unit_id]
    applicable = [rs.id for rs in ctx.rulesets if rs.active]
    rebuild_paused(session, unit_id, lead_pks, [rs for rs in ctx.rulesets if not rs.active], ctx.allow_negative)
    session.execute(delete(ScoreDelta).where(ScoreDelta.lead_pk.in_(lead_pks), ScoreDelta.ruleset_id.in_(applicable)))
    session.execute(delete(LeadScore).where(LeadScore.lead_pk.in_(lead_pks), LeadScore.ruleset_id.in_(applicable)))
    session.execute(
        update(Event)
        .where(
            Event.lead_pk.in_(lead_pks),
            or_(Event.status == SCORED, and_(Event.status == SUPPRESSED, Event.event_type == DECAY)),
        )
        .values(status=PENDING, scored_at=None, suppressed_reason=None)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Lead)
        .where(Lead.pk.in_(lead_pks))
        .values(scored_through_at=None, scored_through_id=None, last_event_at=None)
        .execution_options(synchronize_session=False)
    )
    with_events = set(session.execute(select(Event.lead_pk).where(Event.lead_pk.in_(lead_pks)).distinct()).scalars())
    emptied = lead_pks - with_events
    if emptied:
        session.execute(
            update(Lead).where(Lead.pk.in_(emptied)).values(score=0).execution_options(synchronize_session=False)
        )
        reclassify_unit(session, unit_id)


def rebuild_paused(
    session: Session, unit_id: str, lead_pks: set[int], paused: list[RulesetSpec], allow_negative: bool
) -> None:
    """A paused ruleset keeps the events it scored, but never one deleted or moved away: its scores for these leads are
    rebuilt from the events it still has deltas for, so its ledger still sums to its score (docs/explanations.md)."""
    for spec in paused:
        kept = session.execute(
            select(*SCORING_COLUMNS)
            .join(ScoreDelta, and_(ScoreDelta.event_id == Event.id, ScoreDelta.ruleset_id == spec.id))
            .where(ScoreDelta.lead_pk.in_(lead_pks))
            .order_by(Event.lead_pk, Event.occurred_at, Event.id)
        ).all()
        session.execute(delete(ScoreDelta).where(ScoreDelta.lead_pk.in_(lead_pks), ScoreDelta.ruleset_id == spec.id))
        session.execute(delete(LeadScore).where(LeadScore.lead_pk.in_(lead_pks), LeadScore.ruleset_id == spec.id))
        active = replace(spec, active=True)
        write_scores(session, unit_id, active, scored_leads(kept, active, allow_negative))
