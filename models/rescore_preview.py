"""What publishing a ruleset (with edits) would do to an OU's scores and levels, counted from the computation that
publishing writes (models/rescore.rescored_leads), without writing anything (docs/previews.md)."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from models.engine import RulesetSpec
from models.leads import Lead
from models.level_rules import LevelSpec, classify
from models.rescore import CHUNK, LeadRescore, rescored_leads
from models.scoring import LeadScore

TOP_MOVERS = 20


class RuleEditError(ValueError):
    """An edit that makes a rule no stored rule could be (no weight for a new rule, a window ending before it starts)."""

    def __init__(self, index: int, field: str, message: str):
        super().__init__(message)
        self.field, self.message = f"rules.{index}.{field}", message


def with_edits(rules: list[dict], edits: list[dict], replace: bool = False) -> list[dict]:
    """Stored rules (snapshot_rules' shape) with edits laid over them by event type, as if saved and then published.

    An edit changes the fields it gives of the ruleset's rule for its event type, or adds one (weight then required);
    with replace the stored rules are left out and the edits are the whole ruleset.
    """
    by_type = {} if replace else {r["event_type"]: dict(r) for r in rules}
    named: set[str] = set()
    for n, edit in enumerate(edits):
        event_type = edit["event_type"]
        if event_type in named:
            raise RuleEditError(n, "event_type", f"'{event_type}' is edited twice")
        named.add(event_type)
        base = by_type.get(event_type)
        if base is None and "weight" not in edit:
            raise RuleEditError(n, "weight", "is required for an event type the ruleset has no rule for")
        rule = {"id": None, "active": True, "start_at": None, "end_at": None, **(base or {})}
        rule.update({k: _iso(v) if isinstance(v, datetime) else v for k, v in edit.items()})
        if rule["start_at"] and rule["end_at"] and _when(rule["start_at"]) > _when(rule["end_at"]):
            raise RuleEditError(n, "end_at", "must not be before start_at")
        by_type[event_type] = rule
    return list(by_type.values())


def _iso(value: datetime) -> str:
    return value.isoformat()


def _when(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass(frozen=True)
class LeadState:
    score: int
    level: LevelSpec | None


@dataclass(frozen=True)
class Mover:
    lead_id: str
    before: LeadState
    after: LeadState

    @property
    def change(self) -> int:
        return self.after.score - self.before.score


@dataclass(frozen=True)
class LevelMoves:
    level: LevelSpec | None  # None: Unclassified
    before: int
    moved_in: int
    moved_out: int

    @property
    def after(self) -> int:
        return self.before + self.moved_in - self.moved_out


@dataclass
class RescorePreview:
    as_primary: bool
    leads: int = 0  # the OU's leads (merged ones excluded), each compared before and after
    rescored_leads: int = 0  # leads that would hold a score of the ruleset: what publishing answers as rescored_leads
    score_changes: int = 0
    level_changes: int | None = None  # None: levels not previewed (the ruleset does not set the leads' score)
    levels: list[LevelMoves] | None = None
    top_movers: list[Mover] | None = None


def preview_rescore(
    session: Session,
    unit_id: str,
    spec: RulesetSpec,
    allow_negative: bool,
    levels: list[LevelSpec],
    as_primary: bool,
) -> RescorePreview:
    """Compare every lead's score (and, as the primary, level) now with what rescoring under spec gives.

    Two streams in lead pk order, merged: the leads with their scores now, and rescored_leads. Memory holds one lead's
    events, the per-level counters and the TOP_MOVERS largest movers, whatever the size of the OU.
    """
    out = RescorePreview(as_primary=as_primary)
    now = session.execute(
        select(Lead.pk, Lead.lead_id, Lead.score, Lead.level_id, LeadScore.score.label("kept"))
        .outerjoin(LeadScore, and_(LeadScore.lead_pk == Lead.pk, LeadScore.ruleset_id == spec.id))
        .where(Lead.unit_id == unit_id, Lead.merged_into.is_(None))
        .order_by(Lead.pk)
        .execution_options(yield_per=CHUNK)
    )
    computed = _counted(rescored_leads(session, unit_id, spec, allow_negative), out)
    by_id = {lv.id: lv for lv in levels}
    before_count: Counter = Counter()
    moved_in: Counter = Counter()
    moved_out: Counter = Counter()

    def movers() -> Iterator[Mover]:
        pending = next(computed, None)
        for lead in now:
            while pending is not None and pending.lead_pk < lead.pk:
                pending = next(computed, None)
            new_score = None
            if pending is not None and pending.lead_pk == lead.pk:
                new_score, pending = pending.score, next(computed, None)
            out.leads += 1
            if as_primary:
                before = LeadState(lead.score, by_id.get(lead.level_id))
                after_score = new_score or 0  # a lead without a score of the primary scores 0 (refresh_primary_scores)
                after = LeadState(after_score, classify(after_score, levels))
                before_count[_key(before.level)] += 1
                if _key(before.level) != _key(after.level):
                    moved_out[_key(before.level)] += 1
                    moved_in[_key(after.level)] += 1
            else:
                before, after = LeadState(lead.kept or 0, None), LeadState(new_score or 0, None)
            if before.score != after.score:
                out.score_changes += 1
                yield Mover(lead.lead_id, before, after)
        for _ in computed:  # leads publishing scores that no list shows (none while merges move events): counted
            pass

    out.top_movers = heapq.nsmallest(TOP_MOVERS, movers(), key=lambda m: (-abs(m.change), m.lead_id))
    if as_primary:
        out.levels = [
            LevelMoves(lv, before_count[_key(lv)], moved_in[_key(lv)], moved_out[_key(lv)]) for lv in [*levels, None]
        ]
        out.level_changes = sum(moved_out.values())
    return out


def _key(level: LevelSpec | None) -> str | None:
    return level.id if level else None


def _counted(leads: Iterator[LeadRescore], out: RescorePreview) -> Iterator[LeadRescore]:
    for lead in leads:
        if lead.score is not None:
            out.rescored_leads += 1
        yield lead
