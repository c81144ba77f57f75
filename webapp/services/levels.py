"""The level table's rules and what follows a change of it, wherever it was made (the level API, the console, a revert,
the sample data)."""

from __future__ import annotations

import logging

from sqlalchemy import func, select

from models.change_history import record_level_change, restore_level_table
from models.hubspot import HubSpotConnection
from models.hubspot_sync_state import hubspot_served_units, request_options_sync
from models.level_rules import LevelSpec, LevelTableError, validate_table
from models.levels import EngagementLevel, LevelHistory
from models.locks import lock_unit
from models.reclassify import reclassify_unit
from webapp.app_state import db, state
from webapp.auth import current_unit, principal
from webapp.crud import Crud, get_scoped, scoped
from webapp.errors import ApiError
from worker.jobs import enqueue_hubspot_options, kick_hubspot_sync, try_kick_alerts

log = logging.getLogger("leadpulse.levels")


def try_enqueue_options(unit_id: str) -> None:
    """After a committed level change, if HubSpot serves the OU: the options job, which then writes the contacts the
    change moved or renamed; an OU served by HUBSPOT_ACCESS_TOKEN, the contact sync, which sets the options first.
    The read and the enqueue may fail (a pooled connection dead since a database restart, Redis away) without failing
    the request: the change is committed, with the options marked stale in its transaction, and the sweep finds them
    later."""
    app_state = state()
    try:
        if db().get(HubSpotConnection, unit_id) is not None:
            enqueue_hubspot_options(app_state.redis, app_state.settings.queue_name, unit_id)
        elif hubspot_served_units(db(), app_state.settings, {unit_id}):
            kick_hubspot_sync(app_state.redis, app_state.settings.queue_name, unit_id)
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


class LevelCrud(Crud):
    """The level table's rules (ranges never overlap, names unique, one level at least), for the API and the console."""

    model = EngagementLevel
    label = "engagement level"
    max_per_unit = 100  # every reclassification tests each lead against every level (models/reclassify.py)

    def list_query(self):
        return scoped(EngagementLevel).order_by(EngagementLevel.order, EngagementLevel.min_score, EngagementLevel.id)

    def conflict_message(self, obj):
        return f"a level named '{obj.name}' already exists"

    def create(self, data):
        if "order" not in data:
            top = (
                db()
                .execute(select(func.max(EngagementLevel.order)).where(EngagementLevel.unit_id == principal().unit_id))
                .scalar()
            )
            data["order"] = (top or 0) + 1
        return super().create(data)

    def validate(self, session, obj, creating):
        others = session.execute(
            select(EngagementLevel).where(EngagementLevel.unit_id == obj.unit_id, EngagementLevel.id != (obj.id or ""))
        ).scalars()
        table = [LevelSpec(lv.id, lv.name, lv.min_score, lv.max_score) for lv in others]
        table.append(LevelSpec(obj.id or "", obj.name, obj.min_score, obj.max_score))
        try:
            validate_table(table)
        except LevelTableError as exc:
            status = 409 if exc.code == "duplicate_name" else 400
            raise ApiError(status, exc.code, exc.message, {exc.field: [exc.message]})

    def before_delete(self, session, obj):
        count = session.execute(
            select(func.count()).select_from(EngagementLevel).where(EngagementLevel.unit_id == obj.unit_id)
        ).scalar()
        if count <= 1:
            raise ApiError(400, "last_level", "cannot delete the last engagement level; add another first")
        # Move its leads first, so each move is recorded (ON DELETE SET NULL would erase them silently).
        reclassify_unit(session, obj.unit_id, exclude_level_ids=(obj.id,))

    def after_change(self, session, obj, action):
        if action != "delete":  # before_delete moved the deleted level's leads already
            reclassify_unit(session, obj.unit_id)
        level_table_changed(session, obj.unit_id, action)

    def after_commit(self, obj, action):
        after_level_commit(obj.unit_id)
