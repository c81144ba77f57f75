"""Deleting a lead: asked for in the request, done by a job (a lead may have millions of events), receipt kept."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.events import Event
from models.leads import Lead, LeadDeletion


def request_deletion(session: Session, lead: Lead) -> LeadDeletion:
    """One pending deletion per lead; asking again returns it."""
    pending = session.execute(
        select(LeadDeletion).where(LeadDeletion.lead_pk == lead.pk, LeadDeletion.status == "pending")
    ).scalar()
    if pending is not None:
        return pending
    deletion = LeadDeletion(unit_id=lead.unit_id, lead_id=lead.lead_id, lead_pk=lead.pk, status="pending")
    session.add(deletion)
    session.flush()
    return deletion


def latest_deletion(session: Session, unit_id: str, lead_id: str) -> LeadDeletion | None:
    """The newest deletion asked for a lead id of the OU (its receipt outlives the lead)."""
    return session.execute(
        select(LeadDeletion)
        .where(LeadDeletion.unit_id == unit_id, LeadDeletion.lead_id == lead_id)
        .order_by(LeadDeletion.id.desc())
        .limit(1)
    ).scalar()


EVENT_CHUNK = 5000


def run_deletion(Session, deletion_id: int) -> bool:
    """The lead's events go in chunks of their own transactions (ingest for other leads is never held up for long),
    then the lead row, taking (ON DELETE CASCADE) its aliases, scores, level changes and alerts with it."""
    with Session() as s:
        deletion = s.get(LeadDeletion, deletion_id)
        if deletion is None or deletion.status != "pending":
            return False
        lead_pk, unit_id = deletion.lead_pk, deletion.unit_id
    while True:
        with Session() as s, s.begin():
            chunk = select(Event.id).where(Event.lead_pk == lead_pk).limit(EVENT_CHUNK).scalar_subquery()
            if not s.execute(delete(Event).where(Event.id.in_(chunk))).rowcount:
                break
    with Session() as s, s.begin():
        deletion = s.get(LeadDeletion, deletion_id, with_for_update=True)
        if deletion is None or deletion.status != "pending":
            return False
        lead_id = s.execute(select(Lead.lead_id).where(Lead.pk == lead_pk)).scalar()
        s.execute(delete(Lead).where(Lead.pk == lead_pk, Lead.unit_id == unit_id))
        if lead_id is not None:  # leads merged into it keep only their ids and metadata: they go too
            s.execute(delete(Lead).where(Lead.unit_id == unit_id, Lead.merged_into == lead_id))
        deletion.status, deletion.completed_at, deletion.error = "completed", utcnow(), None
    return True


def mark_failed(session: Session, deletion_id: int, error: str) -> None:
    deletion = session.get(LeadDeletion, deletion_id)
    if deletion is not None and deletion.status == "pending":
        deletion.status, deletion.error = "failed", error[:500]
