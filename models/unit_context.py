"""Loading an OU's configuration as the engine's plain specs, in one query per table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.engine import RulesetSpec, RuleSpec
from models.level_rules import LevelSpec
from models.levels import EngagementLevel
from models.scoring import PUBLISHED, Ruleset
from models.slack import AlertSettings
from models.tenancy import OrgUnit

DEFAULT_ALERT_LEVEL = "Hot"  # alerts default to entries into the level named Hot


@dataclass
class UnitContext:
    unit_id: str
    allow_negative: bool = False
    primary_id: str | None = None
    rulesets: list[RulesetSpec] = field(default_factory=list)
    levels: list[LevelSpec] = field(default_factory=list)
    alert_bar: int | None = None  # min_score of the alert level: only moves across it wake the alert job

    def enters_alert_level(self, old_level_id: str | None, new_level_id: str | None) -> bool:
        if self.alert_bar is None or new_level_id is None:
            return False
        mins = {lv.id: lv.min_score for lv in self.levels}
        return mins.get(new_level_id, self.alert_bar - 1) >= self.alert_bar > mins.get(old_level_id, self.alert_bar - 1)


def snapshot_rules(rules) -> list[dict]:
    """Rules frozen at publish time, as plain JSON."""

    def iso(value):
        return value.isoformat() if value else None

    return [
        {
            "id": r.id,
            "event_type": r.event_type,
            "weight": r.weight,
            "active": r.active,
            "start_at": iso(r.start_at),
            "end_at": iso(r.end_at),
        }
        for r in rules
    ]


def ruleset_spec(rs: Ruleset, rules: list[dict] | None = None) -> RulesetSpec:
    """The ruleset as it scores: its own flags now, its rules as last published; given rules (snapshot_rules' shape),
    as it would score once they were published (a preview or a backtest)."""

    def when(value):
        return datetime.fromisoformat(value) if value else None

    return RulesetSpec(
        id=rs.id,
        published=rs.status == PUBLISHED or rules is not None,
        active=rs.active,
        start_date=rs.start_date,
        end_date=rs.end_date,
        rules={
            r["event_type"]: RuleSpec(
                r["id"], r["event_type"], r["weight"], r["active"], when(r["start_at"]), when(r["end_at"])
            )
            for r in (rs.published_rules or [] if rules is None else rules)
        },
    )


def level_specs(session: Session, unit_id: str) -> list[LevelSpec]:
    """The OU's levels by score as the database has them now (columns, not the session's possibly stale objects: a
    revert rewrites the table with bulk updates before it reclassifies)."""
    lv = EngagementLevel
    rows = session.execute(
        select(lv.id, lv.name, lv.min_score, lv.max_score).where(lv.unit_id == unit_id).order_by(lv.min_score)
    )
    return [LevelSpec(*row) for row in rows]


def load_contexts(session: Session, unit_ids: set[str]) -> dict[str, UnitContext]:
    """Everything scoring needs for these OUs; called after lead locks so it sees the latest config."""
    ctx = {u: UnitContext(u) for u in unit_ids}
    for unit in session.execute(select(OrgUnit).where(OrgUnit.id.in_(unit_ids))).scalars():
        ctx[unit.id].allow_negative = unit.allow_negative_scores
    for rs in session.execute(select(Ruleset).where(Ruleset.unit_id.in_(unit_ids))).scalars():
        if rs.is_primary:
            ctx[rs.unit_id].primary_id = rs.id
        if rs.status == PUBLISHED:
            ctx[rs.unit_id].rulesets.append(ruleset_spec(rs))
    for lv in session.execute(
        select(EngagementLevel).where(EngagementLevel.unit_id.in_(unit_ids)).order_by(EngagementLevel.min_score)
    ).scalars():
        ctx[lv.unit_id].levels.append(LevelSpec(lv.id, lv.name, lv.min_score, lv.max_score))
    chosen = dict(
        session.execute(
            select(AlertSettings.unit_id, EngagementLevel.min_score)
            .join(EngagementLevel, EngagementLevel.id == AlertSettings.alert_min_level_id)
            .where(AlertSettings.unit_id.in_(unit_ids))
        ).all()
    )
    for (
        unit_id,
        c,
    ) in ctx.items():  # the chosen alert level, else the level named Hot (models/alerts.py decides the same)
        c.alert_bar = chosen.get(
            unit_id, next((lv.min_score for lv in c.levels if lv.name.lower() == DEFAULT_ALERT_LEVEL.lower()), None)
        )
    return ctx
