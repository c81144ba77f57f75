"""Deleting a lead: asked for in the request, done by a job (a lead may have millions of events), receipt kept."""
from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.leads import Lead, LeadDeletion


def request_deletion(session: Session, lead: Lead) -> LeadDeletion:
    """One pending deletion per lead; asking again returns it."""
    pending = session.execute(select(LeadDeletion).where(LeadDeletion.lead_pk == lead.pk, LeadDeletion.status == "pending")).scalar()
    if pending is not None:
        return pending
    deletion = LeadDeletion(unit_id=lead.unit_id, lead_id=lead.lead_id, lead_pk=lead.pk, status="pending")
    session.add(deletion)
    session.flush()
    return deletion


def run_deletion(session: Session, deletion_id: int) -> bool:
    """The lead row goes, and with it (ON DELETE CASCADE) its aliases, events, deltas, scores, level changes and alerts."""
    deletion = session.get(LeadDeletion, deletion_id, with_for_update=True)
    if deletion is None or deletion.status != "pending":
        return False
    session.execute(delete(Lead).where(Lead.pk == deletion.lead_pk, Lead.unit_id == deletion.unit_id))
    deletion.status, deletion.completed_at, deletion.error = "completed", utcnow(), None
    return True


def mark_failed(session: Session, deletion_id: int, error: str) -> None:
    deletion = session.get(LeadDeletion, deletion_id)
    if deletion is not None and deletion.status == "pending":
        deletion.status, deletion.error = "failed", error[:500]
