"""Decay rules as the API and the console change them: an edit of a rule's period applies to periods ending after it,
and the OU's next decay pass is rescheduled (docs/scoring.md)."""

from __future__ import annotations

from sqlalchemy import inspect

from models.base import utcnow
from models.decay_pass import reschedule_unit
from models.scoring import DecayRule
from webapp.crud import Crud

PERIOD_FIELDS = ("inactive_for", "unit", "decrease")


class DecayCrud(Crud):
    """A decay rule's period edits apply from the edit on; the OU's decay pass is rescheduled by them."""

    model = DecayRule
    label = "decay rule"
    max_per_unit = 50  # every rule is a term of every decay pass over every lead of the OU

    def validate(self, session, obj, creating):
        state = inspect(obj)
        obj._period_changed = creating or any(state.attrs[name].history.has_changes() for name in PERIOD_FIELDS)
        if obj._period_changed:
            obj.applies_from = utcnow()  # an edit applies to periods ending after it, never again to past ones

    def after_change(self, session, obj, action):
        # A deleted rule only makes some lead's next period end later: none is late for it.
        if getattr(obj, "_period_changed", False):
            reschedule_unit(session, obj.unit_id)
