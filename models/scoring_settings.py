"""An OU's scoring settings (GET/PUT /settings/scoring): the floor, ABM, the session idle timeout."""

from __future__ import annotations

from sqlalchemy.orm import Session

from models.locks import lock_unit
from models.rescore import rescore_unit
from models.tenancy import OrgUnit

FIELDS = ("allow_negative_scores", "abm_enabled", "session_timeout_minutes")


def scoring_settings(session: Session, unit_id: str) -> dict:
    unit = session.get(OrgUnit, unit_id)
    return {name: getattr(unit, name) for name in FIELDS}


def change_scoring_settings(session: Session, unit_id: str, values: dict) -> int | None:
    """Store the given settings; a new floor rescores every published ruleset of the OU from its stored events.
    Returns the leads rescored (None when the floor did not change)."""
    lock_unit(session, unit_id)  # exclusive: no scoring batch of the OU runs under the old floor meanwhile
    unit = session.get(OrgUnit, unit_id)
    floor_changed = values.get("allow_negative_scores", unit.allow_negative_scores) != unit.allow_negative_scores
    for name in FIELDS:
        if name in values:
            setattr(unit, name, values[name])
    session.flush()
    return rescore_unit(session, unit_id) if floor_changed else None
