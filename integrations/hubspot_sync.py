"""Bringing HubSpot up to date with an OU: which token serves it, and the level options of engagement_level."""
from __future__ import annotations

import logging

from sqlalchemy import select, update

from integrations.hubspot import HubSpotAdapter, HubSpotError
from integrations.secretbox import decrypt
from models.integrations import HubSpotConnection
from models.levels import EngagementLevel

log = logging.getLogger("leadpulse.hubspot")
TOKEN_PURPOSE = "hubspot-token"


def token_for(conn: HubSpotConnection | None, settings, secret_key: str) -> str | None:
    """The OU's own token, else HUBSPOT_ACCESS_TOKEN, else None (not configured: work waits, nothing is lost)."""
    if conn is not None:
        return decrypt(secret_key, TOKEN_PURPOSE, conn.token_encrypted)
    return settings.hubspot_access_token


def sync_level_options(Session, settings, secret_key: str, unit_id: str) -> bool:
    """Push the OU's level names as engagement_level's options; True when HubSpot is now current."""
    with Session() as s:
        conn = s.get(HubSpotConnection, unit_id)
        if conn is None or conn.options_synced >= conn.options_wanted:
            return True
        version = conn.options_wanted
        token = token_for(conn, settings, secret_key)
        names = list(s.execute(
            select(EngagementLevel.name).where(EngagementLevel.unit_id == unit_id).order_by(EngagementLevel.min_score)
        ).scalars())
    if token is None:
        _record(Session, unit_id, error="the stored HubSpot token cannot be decrypted (SECRET_KEY changed?): connect again")
        return False
    try:
        HubSpotAdapter(token, settings.hubspot_api_base).ensure_properties(names)
    except HubSpotError as exc:
        _record(Session, unit_id, error=f"updating engagement_level options failed ({exc.status}): {exc.message}")
        raise
    _record(Session, unit_id, version=version)
    return True


def _record(Session, unit_id: str, version: int | None = None, error: str | None = None) -> None:
    """Store the outcome; a version only moves forward, so a slow older run never hides a newer change."""
    values = {"last_error": error[:500] if error else None}
    stmt = update(HubSpotConnection).where(HubSpotConnection.unit_id == unit_id)
    if version is not None:
        stmt = stmt.where(HubSpotConnection.options_synced < version)
        values["options_synced"] = version
    with Session() as s, s.begin():
        s.execute(stmt.values(**values))
