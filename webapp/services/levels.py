"""What follows a change of an OU's levels, wherever it was made (the level API, its revert, the sample data)."""

from __future__ import annotations

import logging

from models.change_history import record_level_change, restore_level_table
from models.hubspot import HubSpotConnection
from models.hubspot_sync_state import request_options_sync
from models.levels import LevelHistory
from models.locks import lock_unit
from webapp.app_state import db, state
from webapp.auth import current_unit, principal
from webapp.crud import get_scoped
from webapp.errors import ApiError
from worker.jobs import enqueue_hubspot_options, try_kick_alerts

log = logging.getLogger("leadpulse.levels")


def try_enqueue_options(unit_id: str) -> None:
    """After a committed level change: the options job, if HubSpot serves the OU. Its read and its enqueue may fail
    (a pooled connection dead since a database restart, Redis away) without failing the request: the change is
    committed, with the options marked stale in its transaction, and the sweep finds them later."""
    app_state = state()
    try:
        if db().get(HubSpotConnection, unit_id) is None:
            return
        enqueue_hubspot_options(app_state.redis, app_state.settings.queue_name, unit_id)
    except Exception as exc:
        log.warning("could not enqueue the HubSpot options sync (%s); the sweep will", exc.__class__.__name__)


def level_table_changed(session, unit_id: str, action: str, reverted_from: str | None = None) -> LevelHistory:
    """In the change's transaction, once the table is final and every lead is in its level: the history entry naming
    the caller, and HubSpot's engagement_level options marked stale (their job runs after the commit)."""
    entry = record_level_change(session, unit_id, principal().actor, action, reverted_from)
    request_options_sync(session, unit_id)
    return entry


def after_level_commit(unit_id: str) -> None:
    """Once committed: the options job, and the alert job, which makes the leads' moves one digest (models/alerts.py)."""
    try_enqueue_options(unit_id)
    try_kick_alerts(state(), unit_id)


def revert_levels(entry_id: str) -> LevelHistory:
    """Restore the level table an entry recorded; every lead is reclassified at once, and the revert is an entry too."""
    session = db()
    unit_id = current_unit()
    lock_unit(session, unit_id)
    entry = get_scoped(LevelHistory, entry_id, "level history entry")
    if not entry.snapshot:  # sample data wiped with nothing left: as DELETE refuses to remove the last level
        message = "that entry's table has no levels, and an OU keeps at least one"
        raise ApiError(400, "last_level", message, {"entry_id": [message]})
    restore_level_table(session, principal().org_id, unit_id, entry.snapshot)
    revert = level_table_changed(session, unit_id, "revert", reverted_from=entry.id)
    session.commit()
    after_level_commit(unit_id)
    return revert
