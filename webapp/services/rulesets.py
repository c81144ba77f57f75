"""Rulesets and their rules: the rules a ruleset and a rule keep (names, one primary, one rule per event type, windows),
publishing and unpublishing, for the API and the console alike (docs/scoring.md)."""

from __future__ import annotations

from sqlalchemy import func, inspect, update

from models.change_history import record_ruleset_change
from models.locks import lock_unit
from models.reclassify import refresh_primary_scores
from models.rescore import clear_ruleset_scores, publish_ruleset
from models.scoring import DRAFT, Rule, Ruleset
from webapp.app_state import db, state
from webapp.auth import current_unit, principal
from webapp.crud import Crud, get_scoped, scoped
from webapp.errors import ApiError
from worker.jobs import try_kick_alerts


class RulesetCrud(Crud):
    """A ruleset's rules: unique names (any case), one primary per OU, a window that ends after it starts."""

    model = Ruleset
    label = "ruleset"

    def conflict_message(self, obj):
        return f"a ruleset named '{obj.name}' already exists"

    def validate(self, session, obj, creating):
        self.check_window(obj, "start_date", "end_date")
        self.refuse_duplicate(
            session, obj, "name", Ruleset.unit_id == obj.unit_id, func.lower(Ruleset.name) == obj.name.lower()
        )
        obj._primary_changed = creating and obj.is_primary or inspect(obj).attrs.is_primary.history.has_changes()
        if obj.is_primary:
            session.execute(
                update(Ruleset)
                .where(Ruleset.unit_id == obj.unit_id, Ruleset.id != (obj.id or ""), Ruleset.is_primary.is_(True))
                .values(is_primary=False)
                .execution_options(synchronize_session=False)
            )
        if creating:
            obj.status = DRAFT

    def after_change(self, session, obj, action):
        if getattr(obj, "_primary_changed", False) or (action == "delete" and obj.is_primary):
            refresh_primary_scores(session, obj.unit_id)

    def after_commit(self, obj, action):
        try_kick_alerts(state(), obj.unit_id)


class RuleCrud(Crud):
    """A rule's: one per event type in its ruleset, the ruleset the OU's (the primary when none is named)."""

    model = Rule
    label = "rule"

    def conflict_message(self, obj):
        return f"ruleset already has a rule for event type '{obj.event_type}'"

    def create(self, data):
        if not data.get("ruleset_id"):
            primary = db().execute(scoped(Ruleset).where(Ruleset.is_primary.is_(True))).scalar()
            if primary is None:
                raise ApiError(
                    400,
                    "validation_error",
                    "ruleset_id is required when the OU has no primary ruleset",
                    {"ruleset_id": ["required"]},
                )
            data["ruleset_id"] = primary.id
        data["created_by"] = data["updated_by"] = principal().member_id
        return super().create(data)

    def update(self, obj_id, data):
        data["updated_by"] = principal().member_id
        return super().update(obj_id, data)

    def validate(self, session, obj, creating):
        get_scoped(Ruleset, obj.ruleset_id, "ruleset")
        self.check_window(obj, "start_at", "end_at")
        self.refuse_duplicate(
            session, obj, "event_type", Rule.ruleset_id == obj.ruleset_id, Rule.event_type == obj.event_type
        )


def publish(ruleset_id: str) -> tuple[Ruleset, int]:
    """Draft -> published (or republished after rule edits): its current rules score from now on and every lead of
    the OU is rescored by them; returns the ruleset and the leads rescored."""
    session = db()
    lock_unit(session, current_unit())
    rs = get_scoped(Ruleset, ruleset_id, "ruleset")
    leads = publish_ruleset(session, rs)
    record_ruleset_change(session, rs, principal().actor, "publish")
    session.commit()
    try_kick_alerts(state(), rs.unit_id)
    return rs, leads


def unpublish(ruleset_id: str) -> Ruleset:
    """Back to draft: the ruleset stops scoring and its scores are withdrawn (republishing rebuilds them)."""
    session = db()
    lock_unit(session, current_unit())
    rs = get_scoped(Ruleset, ruleset_id, "ruleset")
    if rs.status != DRAFT:
        rs.status = DRAFT
        session.flush()
        clear_ruleset_scores(session, rs)
        if rs.is_primary:
            refresh_primary_scores(session, rs.unit_id)
        record_ruleset_change(session, rs, principal().actor, "unpublish")
    session.commit()
    try_kick_alerts(state(), rs.unit_id)
    return rs
