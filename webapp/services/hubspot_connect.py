"""An OU's HubSpot connection, for the /integrations/hubspot routes and the console alike: connecting (the token
checked against HubSpot, the leadpulse properties made ready, then the token stored encrypted and the waiting leads
synced), a full resync, the contacts HubSpot refused, disconnecting."""

from __future__ import annotations

import logging

from sqlalchemy import select

from integrations.hubspot import HubSpotAdapter, HubSpotAuthError, HubSpotError
from integrations.hubspot_sync import TOKEN_PURPOSE, ensure_options
from integrations.rate_limit import RateLimited
from integrations.secretbox import encrypt
from models.hubspot import HubSpotConnection, HubSpotContact
from models.hubspot_sync_state import reset_sync, sync_counts
from models.lead_identity import primary_email
from models.leads import Lead
from models.level_queries import level_options
from webapp.app_state import close_db, db, state
from webapp.errors import ApiError
from webapp.services.integration_status import hubspot_status
from worker.jobs import kick_hubspot_sync

log = logging.getLogger("leadpulse.hubspot")


def connect_hubspot(unit_id: str, access_token: str, create_missing_contacts: bool) -> None:
    """Nothing is stored unless HubSpot accepts the token and the properties are in place."""
    names, others = level_options(db(), unit_id)
    close_db()  # no transaction held open across HubSpot calls
    adapter = HubSpotAdapter(access_token, state().settings.hubspot_api_base)
    try:
        portal_id = adapter.portal_id()
        ensure_options(state().redis, adapter, access_token, names, others, portal_id)
    except HubSpotAuthError as exc:
        raise ApiError(
            400,
            "invalid_token",
            f"HubSpot rejected the access token: {exc.message}",
            {"access_token": ["rejected by HubSpot"]},
        ) from exc
    except HubSpotError as exc:
        raise ApiError(502, "hubspot_unavailable", f"HubSpot failed ({exc.status}): {exc.message}") from exc
    except RateLimited as exc:  # another OU of this portal is updating the options right now
        raise ApiError(
            503,
            "busy",
            "HubSpot's properties are being updated for another unit; retry shortly",
            headers={"Retry-After": str(int(exc.wait) + 1)},
        ) from exc
    session = db()
    conn = session.get(HubSpotConnection, unit_id) or HubSpotConnection(unit_id=unit_id)
    conn.token_encrypted = encrypt(state().secret_key, TOKEN_PURPOSE, access_token)
    conn.portal_id, conn.properties_ready = portal_id, True
    conn.create_missing_contacts, conn.last_error = create_missing_contacts, None
    conn.options_wanted = conn.options_synced = (conn.options_wanted or 0) + 1  # just pushed by ensure_properties
    session.add(conn)
    session.commit()
    try_kick_sync(unit_id)  # deliver what waited while HubSpot was not configured


def try_kick_sync(unit_id: str) -> None:
    """Enqueue the OU's contact sync; if Redis is down, the sweep does it."""
    try:
        kick_hubspot_sync(state().redis, state().settings.queue_name, unit_id)
    except Exception as exc:
        log.warning("could not enqueue the HubSpot sync (%s); the sweep will", exc.__class__.__name__)


def resync_hubspot(unit_id: str) -> int:
    """Every lead of the OU written to HubSpot again (after a restore, or to clear old failures); returns how many
    leads now wait."""
    if not hubspot_status(unit_id)["connected"]:
        raise ApiError(409, "not_connected", "connect HubSpot first: PUT /integrations/hubspot")
    session = db()
    reset_sync(session, unit_id)
    session.commit()
    try_kick_sync(unit_id)
    return sync_counts(db(), unit_id)[0]


FAILURES_ORDER = (HubSpotContact.failed_at.desc(), Lead.lead_id)  # newest first


def failures_statement(unit_id: str):
    """The OU's contacts HubSpot refused or could not find (order by FAILURES_ORDER; rows for failure_items)."""
    return (
        select(
            Lead.lead_id,
            primary_email().label("email"),
            HubSpotContact.hubspot_id,
            HubSpotContact.failure,
            HubSpotContact.failed_score,
            HubSpotContact.failed_at,
        )
        .join(Lead, Lead.pk == HubSpotContact.lead_pk)
        .where(HubSpotContact.unit_id == unit_id, HubSpotContact.failure.isnot(None))
    )


def failure_items(rows) -> list[dict]:
    """failures_statement's rows as the API names their fields (failed_at still a datetime)."""
    return [
        {
            "lead_id": r.lead_id,
            "email": r.email,
            "hubspot_id": r.hubspot_id,
            "error": r.failure,
            "score": r.failed_score,
            "failed_at": r.failed_at,
        }
        for r in rows
    ]


def disconnect_hubspot(unit_id: str) -> None:
    """The OU's own token is forgotten (the server's default, if it serves the OU, syncs on)."""
    session = db()
    conn = session.get(HubSpotConnection, unit_id)
    if conn is None:
        raise ApiError(404, "not_found", "HubSpot is not connected for this organization unit")
    session.delete(conn)
    session.commit()
