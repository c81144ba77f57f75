"""What follows a committed change of an OU's levels, wherever it was made (the level API, its revert, the sample data)."""

from __future__ import annotations

import logging

from models.hubspot import HubSpotConnection
from webapp.app_state import db, state
from worker.jobs import enqueue_hubspot_options

log = logging.getLogger("leadpulse.levels")


def try_enqueue_options(unit_id: str) -> None:
    """After a committed level change; if Redis is down the sweep finds the stale options later."""
    if db().get(HubSpotConnection, unit_id) is None:
        return
    app_state = state()
    try:
        enqueue_hubspot_options(app_state.redis, app_state.settings.queue_name, unit_id)
    except Exception as exc:
        log.warning("could not enqueue the HubSpot options sync (%s); the sweep will", exc.__class__.__name__)
