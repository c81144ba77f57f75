"""Which level entries alert an OU's Slack, the cooldown and the digest, for PUT /settings/ou/alerts and the console's
Integrations page alike: the same defaults and the same refusal of a level the OU does not have."""

from __future__ import annotations

from sqlalchemy import func, or_, select

from models.alerts import alert_config
from models.levels import EngagementLevel
from models.slack import AlertSettings
from webapp.app_state import db
from webapp.errors import ApiError


def _level(unit_id: str, ref: str):
    return (
        db()
        .execute(
            select(EngagementLevel).where(
                EngagementLevel.unit_id == unit_id,
                or_(EngagementLevel.id == ref, func.lower(EngagementLevel.name) == ref.lower()),
            )
        )
        .scalar()
    )


def effective_alert_settings(unit_id: str) -> dict:
    """The settings in force: the level named Hot when none is set."""
    cfg = alert_config(db(), unit_id)
    return {
        "alert_min_level": {"id": cfg.level.id, "name": cfg.level.name} if cfg.level else None,
        "alert_min_level_is_default": cfg.is_default,
        "cooldown_hours": cfg.cooldown_hours,
        "digest_on_reclassification": cfg.digest,
    }


def update_alert_settings(unit_id: str, data: dict) -> dict:
    """data as AlertSettingsIn loads it: only the fields it names change; a level is this OU's, by id or name."""
    session = db()
    row = session.get(AlertSettings, unit_id) or AlertSettings(unit_id=unit_id)
    if "alert_min_level" in data:
        ref = data["alert_min_level"]
        level = _level(unit_id, ref) if ref else None
        if ref and level is None:
            raise ApiError(
                400,
                "validation_error",
                f"alert_min_level: no level '{ref}' in this organization unit",
                {"alert_min_level": ["no such level"]},
            )
        row.alert_min_level_id = level.id if level else None
    if "cooldown_hours" in data:
        row.cooldown_hours = data["cooldown_hours"]
    if "digest_on_reclassification" in data:
        row.digest_on_reclassification = data["digest_on_reclassification"]
    session.add(row)
    session.commit()
    return effective_alert_settings(unit_id)
