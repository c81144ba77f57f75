"""What HubSpot still has to be told, per OU: contacts to write, level options to resend, creations to link."""

from __future__ import annotations

from sqlalchemy import and_, func, or_, select, update

from models.base import utcnow
from models.dialect import insert_for
from models.hubspot import HubSpotConnection, HubSpotContact, HubSpotPendingCreation
from models.ingest import IncomingEvent, resolve_leads
from models.integration_defaults import units_served_by_default
from models.lead_identity import normalize_alias, primary_email
from models.leads import Lead
from models.levels import EngagementLevel


def pending_query(unit_id: str, after: int = 0):
    """Leads whose score or level's name differ from what HubSpot has, coalesced to their latest values.

    Derived, not queued: whatever happened since the last write, the current values are what gets sent.
    Leads with neither an email nor a known contact id cannot map to a contact and are left out; a write
    HubSpot refused is not retried for the same values, but any later change of the lead retries it.
    """
    email = primary_email()  # the key HubSpot contacts are found by, the one GET /leads shows
    hc = HubSpotContact
    level = EngagementLevel.name
    return (
        select(
            Lead.pk,
            Lead.lead_id,
            Lead.score,
            level.label("level_name"),
            Lead.level_changed_at,
            hc.hubspot_id,
            email.label("email"),
        )
        # the key range on both sides of the join: the planner reaches either from `after`, not from its first row
        .outerjoin(hc, and_(hc.lead_pk == Lead.pk, hc.lead_pk > after))
        .outerjoin(EngagementLevel, EngagementLevel.id == Lead.level_id)
        .where(
            Lead.unit_id == unit_id,
            Lead.pk > after,
            Lead.merged_into.is_(None),
            or_(
                hc.lead_pk.is_(None),
                Lead.score.is_distinct_from(hc.synced_score),
                level.is_distinct_from(hc.synced_level),
            ),
            or_(
                hc.failure.is_(None),
                Lead.score.is_distinct_from(hc.failed_score),
                level.is_distinct_from(hc.failed_level),
            ),
            or_(hc.hubspot_id.isnot(None), email.isnot(None)),
        )
    )


def pending_contacts(session, unit_id: str, limit: int, after: int = 0):
    """The next `limit` pending leads by key, from after `after`: a sync run walks the OU once, not from its first lead
    each batch (past the leads it synced, that read grew with every batch)."""
    return session.execute(pending_query(unit_id, after).order_by(Lead.pk).limit(limit)).all()


def sync_counts(session, unit_id: str) -> tuple[int, int]:
    """(pending, failed) for the status endpoint."""
    pending = session.execute(select(func.count()).select_from(pending_query(unit_id).subquery())).scalar()
    failed = session.execute(
        select(func.count())
        .select_from(HubSpotContact)
        .where(HubSpotContact.unit_id == unit_id, HubSpotContact.failure.isnot(None))
    ).scalar()
    return pending, failed


def reset_sync(session, unit_id: str) -> None:
    """Forget what HubSpot holds (ids stay): the next sync writes every lead of the OU again."""
    session.execute(
        update(HubSpotContact)
        .where(HubSpotContact.unit_id == unit_id)
        .values(
            synced_score=None,
            synced_level=None,
            failed_score=None,
            failed_level=None,
            failure=None,
            failed_at=None,
        )
        .execution_options(synchronize_session=False)
    )


def request_options_sync(session, unit_id: str) -> None:
    """Mark the OU's HubSpot level options stale, in the caller's transaction."""
    session.execute(
        update(HubSpotConnection)
        .where(HubSpotConnection.unit_id == unit_id)
        .values(options_wanted=HubSpotConnection.options_wanted + 1)
        .execution_options(synchronize_session=False)
    )


def stale_option_units(session) -> list[str]:
    return list(
        session.execute(
            select(HubSpotConnection.unit_id).where(HubSpotConnection.options_synced < HubSpotConnection.options_wanted)
        ).scalars()
    )


def link_contacts(session, org_id: str, unit_id: str, contacts: list[tuple[str, str]]) -> int:
    """Link each (HubSpot contact id, email) to the lead with that email, creating the lead if none has it; all leads
    resolved at once, as if one at a time. Returns how many were linked."""
    if not contacts:
        return 0
    leads = resolve_leads(
        session,
        org_id,
        unit_id,
        [
            IncomingEvent(
                event_type="contact.creation",
                occurred_at=utcnow(),
                aliases=[("email", normalize_alias("email", email))],
            )
            for _, email in contacts
        ],
    )
    for (contact_id, _), (pk, _) in zip(contacts, leads):
        stmt = insert_for(session, HubSpotContact).values(lead_pk=pk, unit_id=unit_id, hubspot_id=contact_id)
        session.execute(
            stmt.on_conflict_do_update(index_elements=["lead_pk"], set_={"hubspot_id": stmt.excluded.hubspot_id})
        )
    return len(contacts)


def pending_creations(session, unit_id: str, limit: int) -> list[HubSpotPendingCreation]:
    """The OU's oldest waiting contact creations."""
    return list(
        session.execute(
            select(HubSpotPendingCreation)
            .where(HubSpotPendingCreation.unit_id == unit_id)
            .order_by(HubSpotPendingCreation.received_at, HubSpotPendingCreation.hubspot_id)
            .limit(limit)
        ).scalars()
    )


def hubspot_served_units(session, settings, among: set[str] | None = None) -> list[str]:
    """OUs whose leads sync to HubSpot (of `among` when given): those connected, and those HUBSPOT_ACCESS_TOKEN
    serves when it is set."""
    query = select(HubSpotConnection.unit_id)
    if among is not None:
        query = query.where(HubSpotConnection.unit_id.in_(among))
    units = set(session.execute(query).scalars())
    if settings.hubspot_access_token:
        units |= units_served_by_default(session, settings, among)
    return sorted(units)
