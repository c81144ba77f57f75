"""Which OUs the environment's HubSpot and Slack defaults serve: only those LEADPULSE_DEFAULT_INTEGRATION_UNITS names.

The defaults are the operator's own portal and workspace: an OU they do not serve has no integration until it
connects its own, so another organization never posts to the operator's channel, lists its workspace or writes
to its portal's contacts.
"""

from __future__ import annotations

from sqlalchemy import or_, select

from config import ALL_UNITS
from models.tenancy import Organization, OrgUnit


def _served(settings):
    """The default-served OUs as a condition on OrgUnit; unset means the first organization's (the bootstrap one)."""
    wanted = settings.default_integration_units
    if wanted is None:
        first = select(Organization.id).order_by(Organization.created_at, Organization.id).limit(1).scalar_subquery()
        return OrgUnit.org_id == first
    return or_(OrgUnit.id.in_(wanted), OrgUnit.org_id.in_(wanted))


def default_serves(session, settings, unit_id: str) -> bool:
    """Whether the environment's defaults (HUBSPOT_ACCESS_TOKEN, SLACK_BOT_TOKEN, SLACK_ALERT_CHANNEL) serve this OU."""
    if settings.default_integration_units == ALL_UNITS:
        return True
    return session.execute(select(OrgUnit.id).where(OrgUnit.id == unit_id, _served(settings))).first() is not None


def units_served_by_default(session, settings, among: set[str] | None = None) -> set[str]:
    """default_serves for many OUs at once (of `among` when given), for the sweep."""
    if settings.default_integration_units == ALL_UNITS and among is not None:
        return set(among)
    query = select(OrgUnit.id)
    if settings.default_integration_units != ALL_UNITS:
        query = query.where(_served(settings))
    if among is not None:
        query = query.where(OrgUnit.id.in_(among))
    return set(session.execute(query).scalars())
