"""When decay will move a lead down a level unless it is active before: "drops to Warm on 3 March" (docs/scoring.md).

`forecast` is pure (the lead and explanation endpoints, and anything else, get the same answer from it);
`forecast_for_lead` loads what it needs for one stored lead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.base import EPOCH, to_micros
from models.leads import Lead
from models.level_rules import LevelSpec, classify
from models.scoring import DECAY_UNITS, PUBLISHED, DecayRule, Ruleset
from models.tenancy import OrgUnit
from models.unit_context import level_specs


@dataclass(frozen=True)
class DecayPeriod:
    """A decay rule as the forecast needs it."""

    period: timedelta
    decrease: int
    applies_from: datetime


@dataclass(frozen=True)
class Forecast:
    at: datetime  # the end of the period whose decay takes the lead below its level
    score: int  # the score then
    level: LevelSpec | None  # the level then (None: below every level)


def decay_periods(rules) -> list[DecayPeriod]:
    """Stored decay rules (DecayRule rows) as the forecast takes them."""
    return [
        DecayPeriod(timedelta(seconds=DECAY_UNITS[r.unit] * r.inactive_for), r.decrease, r.applies_from) for r in rules
    ]


LAST = to_micros(datetime(9999, 12, 31, tzinfo=UTC))


def forecast(
    score: int,
    levels: Sequence[LevelSpec],
    rules: Iterable[DecayPeriod],
    last_activity: datetime | None,
    applied_through: datetime | None = None,
    allow_negative: bool = False,
    until: datetime | None = None,
) -> Forecast | None:
    """The first moment the decay rules take `score` below the range of its level, if no activity comes first.

    Periods count from `last_activity`, once each, as the decay pass applies them: those ending after
    `applied_through` (already in the score up to there) and after each rule's `applies_from`. None when the score has
    no level, the floor keeps it in its level, there is no rule, or the drop would come after `until` (the primary
    ruleset's end).
    """
    rules = [r for r in rules if r.decrease > 0 and r.period > timedelta(0)]
    current = classify(score, levels)
    if last_activity is None or not rules or current is None:
        return None
    if not allow_negative and current.min_score <= 0:
        return None  # the floor at 0 keeps the score in its level
    needed = score - current.min_score + 1  # points to lose to fall below the level
    anchor = to_micros(last_activity)
    after = to_micros(max(applied_through or last_activity, last_activity))
    # Per rule: period in us, decrease, periods already counted (ending by its lower bound).
    spans = []
    for r in rules:
        period = to_micros(EPOCH + r.period)
        lower = max(after, to_micros(r.applies_from))
        spans.append((period, r.decrease, (lower - anchor) // period))

    def lost(t: int) -> int:
        return sum(n * max(0, (t - anchor) // p - done) for p, n, done in spans)

    p0, _, done0 = spans[0]
    high = anchor + p0 * (done0 + needed)  # the first rule alone takes `needed` by then
    high = min(high, LAST if until is None else to_micros(until))
    if lost(high) < needed:
        return None  # not before the primary ruleset ends (or the calendar does)
    low = after
    while low < high:  # the smallest t that loses enough: always a period's end
        mid = (low + high) // 2
        if lost(mid) >= needed:
            high = mid
        else:
            low = mid + 1
    at = EPOCH + timedelta(microseconds=low)
    new_score = score - lost(low)
    if not allow_negative:
        new_score = max(new_score, 0)
    return Forecast(at, new_score, classify(new_score, levels))


def forecast_for_lead(session: Session, lead: Lead) -> Forecast | None:
    """The forecast for a stored lead's primary score (its level's score), from its OU's decay rules."""
    if lead.last_event_at is None or lead.merged_into is not None:
        return None
    rules = session.execute(select(DecayRule).where(DecayRule.unit_id == lead.unit_id)).scalars().all()
    if not rules:
        return None
    primary = session.execute(
        select(Ruleset).where(
            Ruleset.unit_id == lead.unit_id, Ruleset.is_primary.is_(True), Ruleset.status == PUBLISHED
        )
    ).scalar()
    if primary is None or not primary.active:
        return None
    return forecast(
        lead.score,
        level_specs(session, lead.unit_id),
        decay_periods(rules),
        lead.last_event_at,
        lead.scored_through_at,
        bool(session.execute(select(OrgUnit.allow_negative_scores).where(OrgUnit.id == lead.unit_id)).scalar()),
        primary.end_date,
    )
