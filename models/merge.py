"""Merging leads of one OU: the sources' events and aliases move to the target, which is rescored from all of them."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.engine import DECAY
from models.events import Event, ScoreDelta
from models.leads import Lead, LeadAlias, LeadDeletion
from models.levels import LeadLevelChange
from models.locks import lock_unit
from models.replay import replay_leads
from models.scoring import LeadScore


class MergeError(ValueError):
    def __init__(self, status: int, field: str, message: str):
        super().__init__(message)
        self.status, self.field = status, field


@dataclass
class MergeResult:
    target: Lead
    merged: list[str]
    moved_events: int
    moved_aliases: int


def merge_leads(session: Session, unit_id: str, target_id: str, source_ids: list[str]) -> MergeResult:
    """Sources keep their row, marked merged_into the target, with no events, aliases, score or level left."""
    sources_wanted = list(dict.fromkeys(source_ids))
    if target_id in sources_wanted:
        raise MergeError(400, "sourceLeadIds", "a lead cannot be merged into itself")
    lock_unit(session, unit_id)  # exclusive: no scoring batch of this OU runs in between
    leads = {
        lead.lead_id: lead
        for lead in session.execute(
            select(Lead)
            .where(Lead.unit_id == unit_id, Lead.lead_id.in_([target_id, *sources_wanted]))
            .order_by(Lead.pk)
            .with_for_update(key_share=True)
        ).scalars()
    }
    target = leads.get(target_id)
    if target is None:
        raise MergeError(404, "targetLeadId", f"lead '{target_id}' not found")
    missing = [i for i in sources_wanted if i not in leads]
    if missing:  # another OU's lead is as unknown here as a missing one
        raise MergeError(404, "sourceLeadIds", f"leads not found: {', '.join(missing)}")
    if target.merged_into:
        raise MergeError(409, "targetLeadId", f"lead '{target_id}' was merged into '{target.merged_into}'")
    already = [i for i in sources_wanted if leads[i].merged_into]
    if already:
        raise MergeError(409, "sourceLeadIds", f"already merged: {', '.join(already)}")
    deleting = set(
        session.execute(
            select(LeadDeletion.lead_id).where(
                LeadDeletion.unit_id == unit_id, LeadDeletion.status == "pending", LeadDeletion.lead_id.in_(list(leads))
            )
        ).scalars()
    )
    if deleting:  # the deletion would take the moved events with it
        field = "targetLeadId" if target_id in deleting else "sourceLeadIds"
        raise MergeError(409, field, f"being deleted: {', '.join(sorted(deleting))}")
    source_pks = [leads[i].pk for i in sources_wanted]
    moved_events = session.execute(
        update(Event)
        .where(Event.lead_pk.in_(source_pks))
        .values(lead_pk=target.pk)
        .execution_options(synchronize_session=False)
    ).rowcount
    moved_aliases = session.execute(
        update(LeadAlias)
        .where(LeadAlias.lead_pk.in_(source_pks))
        .values(lead_pk=target.pk)
        .execution_options(synchronize_session=False)
    ).rowcount
    now = utcnow()
    for i in sources_wanted:
        source = leads[i]
        if source.level_id is not None:  # leaving its level is recorded like any move
            session.add(
                LeadLevelChange(
                    unit_id=unit_id,
                    lead_pk=source.pk,
                    from_level_id=source.level_id,
                    to_level_id=None,
                    score=0,
                    cause="merge",
                    changed_at=now,
                    alert_checked=True,
                )
            )
        source.merged_into, source.score, source.level_id, source.level_changed_at = target_id, 0, None, now
        source.scored_through_at = source.scored_through_id = None
        source.updated_at = now
    last = session.execute(
        select(func.max(Event.occurred_at)).where(Event.lead_pk == target.pk, Event.event_type != DECAY)
    ).scalar()
    target.last_event_at, target.updated_at = last, now  # what the answer shows; scoring sets it again
    session.flush()
    # The moved events' deltas and the sources' scores are the sources' no more: the target's replay rebuilds them.
    session.execute(delete(ScoreDelta).where(ScoreDelta.lead_pk.in_(source_pks)))
    session.execute(delete(LeadScore).where(LeadScore.lead_pk.in_(source_pks)))
    replay_leads(session, unit_id, {target.pk})
    return MergeResult(target, sources_wanted, moved_events, moved_aliases)
