"""Connecting an OU to HubSpot, for PUT /integrations/hubspot and the console alike: the token checked against HubSpot,
the leadpulse properties made ready, then the token stored encrypted and the waiting leads synced."""

from __future__ import annotations

import logging

from integrations.hubspot import HubSpotAdapter, HubSpotAuthError, HubSpotError
from integrations.hubspot_sync import TOKEN_PURPOSE, ensure_options
from integrations.rate_limit import RateLimited
from integrations.secretbox import encrypt
from models.hubspot import HubSpotConnection
from models.level_queries import level_options
from webapp.app_state import close_db, db, state
from webapp.errors import ApiError
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
