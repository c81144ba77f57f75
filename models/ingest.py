"""Persisting one incoming event: find or create its lead, dedupe by idempotency key, insert."""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from models.base import utcnow
from models.events import Event
from models.leads import Lead, LeadAlias
from models.sql import insert_for


@dataclass
class IncomingEvent:
    event_type: str
    occurred_at: datetime
    metadata: dict = field(default_factory=dict)
    lead_id: str | None = None
    aliases: list[tuple[str, str]] = field(default_factory=list)  # normalized (kind, value)
    idempotency_key: str | None = None


@dataclass
class IngestResult:
    event_id: int
    lead_id: str
    duplicate: bool


def find_duplicate(session: Session, unit_id: str, key: str) -> IngestResult | None:
    row = session.execute(
        select(Event.id, Lead.lead_id)
        .join(Lead, Lead.pk == Event.lead_pk)
        .where(Event.unit_id == unit_id, Event.idempotency_key == key)
    ).first()
    return IngestResult(row.id, row.lead_id, True) if row else None


def ingest_event(session: Session, org_id: str, unit_id: str, ev: IncomingEvent) -> IngestResult:
    """Write the event in the caller's transaction; a repeated idempotency key is reported, not stored."""
    if ev.idempotency_key:
        dup = find_duplicate(session, unit_id, ev.idempotency_key)
        if dup:
            return dup
    lead_pk, lead_id = resolve_lead(session, org_id, unit_id, ev.lead_id, ev.aliases)
    stmt = insert_for(session, Event).values(
        org_id=org_id,
        unit_id=unit_id,
        lead_pk=lead_pk,
        event_type=ev.event_type,
        occurred_at=ev.occurred_at,
        received_at=utcnow(),
        metadata=ev.metadata,
        idempotency_key=ev.idempotency_key,
        status=0,
    )
    if ev.idempotency_key:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=["unit_id", "idempotency_key"], index_where=Event.idempotency_key.isnot(None)
        )
    event_id = session.execute(stmt.returning(Event.id)).scalar()
    if event_id is None:  # lost a race with the same key
        return find_duplicate(session, unit_id, ev.idempotency_key)
    return IngestResult(event_id, lead_id, False)


def resolve_lead(
    session: Session, org_id: str, unit_id: str, lead_id: str | None, aliases: list[tuple[str, str]]
) -> tuple[int, str]:
    """Find the lead by lead_id or any alias, creating it on first sight; attach new aliases to it."""
    if lead_id:
        pk = _lead_pk(session, unit_id, lead_id)
        if pk is None:
            now = utcnow()
            pk = session.execute(
                insert_for(session, Lead)
                .values(org_id=org_id, unit_id=unit_id, lead_id=lead_id, metadata={}, score=0, created_at=now, updated_at=now)
                .on_conflict_do_nothing(index_elements=["unit_id", "lead_id"])
                .returning(Lead.pk)
            ).scalar()
            if pk is None:
                pk = _lead_pk(session, unit_id, lead_id)
        if aliases:
            attach_aliases(session, unit_id, pk, aliases)
        return pk, lead_id

    found = _find_by_aliases(session, unit_id, aliases)
    if found is None:
        found = _create_for_aliases(session, org_id, unit_id, aliases)
    pk, lead_id, known = found
    missing = [a for a in aliases if a not in known]
    if missing:
        attach_aliases(session, unit_id, pk, missing)
    return pk, lead_id


def _lead_pk(session: Session, unit_id: str, lead_id: str) -> int | None:
    return session.execute(select(Lead.pk).where(Lead.unit_id == unit_id, Lead.lead_id == lead_id)).scalar()


def _find_by_aliases(session: Session, unit_id: str, aliases: list[tuple[str, str]]):
    """The lead of the first alias (in the order given) that is already known."""
    rows = session.execute(
        select(LeadAlias.kind, LeadAlias.value, LeadAlias.lead_pk, Lead.lead_id)
        .join(Lead, Lead.pk == LeadAlias.lead_pk)
        .where(LeadAlias.unit_id == unit_id, or_(*[and_(LeadAlias.kind == k, LeadAlias.value == v) for k, v in aliases]))
    ).all()
    if not rows:
        return None
    owner = {(r.kind, r.value): (r.lead_pk, r.lead_id) for r in rows}
    first = next(owner[a] for a in aliases if a in owner)
    return first[0], first[1], set(owner)


def _create_for_aliases(session: Session, org_id: str, unit_id: str, aliases: list[tuple[str, str]]):
    """Create a lead for unseen aliases; if a concurrent request won the race, use its lead."""
    lead_id = "ld_" + uuid.uuid4().hex
    now = utcnow()
    try:
        with session.begin_nested():
            pk = session.execute(
                insert_for(session, Lead)
                .values(org_id=org_id, unit_id=unit_id, lead_id=lead_id, metadata={}, score=0, created_at=now, updated_at=now)
                .returning(Lead.pk)
            ).scalar()
            session.execute(
                insert_for(session, LeadAlias),
                [dict(unit_id=unit_id, lead_pk=pk, kind=k, value=v, created_at=now) for k, v in aliases],
            )
        return pk, lead_id, set(aliases)
    except IntegrityError:
        found = _find_by_aliases(session, unit_id, aliases)
        if found is None:
            raise
        return found


def attach_aliases(session: Session, unit_id: str, lead_pk: int, aliases: list[tuple[str, str]]) -> None:
    """Attach aliases; one already owned by another lead stays where it is (no silent identity theft)."""
    now = utcnow()
    session.execute(
        insert_for(session, LeadAlias).on_conflict_do_nothing(index_elements=["unit_id", "kind", "value"]),
        [dict(unit_id=unit_id, lead_pk=lead_pk, kind=k, value=v, created_at=now) for k, v in aliases],
    )
