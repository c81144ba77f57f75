"""The scoring engine: pure functions from events, rules and current scores to new scores and deltas."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class RuleSpec:
    id: str
    event_type: str
    weight: int
    active: bool = True
    start_at: datetime | None = None
    end_at: datetime | None = None

    def applies_at(self, when: datetime) -> bool:
        return self.active and _within(when, self.start_at, self.end_at)


@dataclass(frozen=True)
class RulesetSpec:
    id: str
    published: bool
    active: bool = True
    start_date: datetime | None = None
    end_date: datetime | None = None
    rules: dict[str, RuleSpec] = field(default_factory=dict)  # event_type -> rule

    def rule_for(self, event_type: str, when: datetime) -> RuleSpec | None:
        """The one rule that scores this event here, if the ruleset and rule windows hold it."""
        if not (self.published and self.active and _within(when, self.start_date, self.end_date)):
            return None
        rule = self.rules.get(event_type)
        return rule if rule is not None and rule.applies_at(when) else None


@dataclass(frozen=True)
class EventSpec:
    id: int
    event_type: str
    occurred_at: datetime

    @property
    def order_key(self) -> tuple[datetime, int]:
        return (self.occurred_at, self.id)


@dataclass(frozen=True)
class Delta:
    event_id: int
    ruleset_id: str
    rule_id: str
    delta: int
    score_after: int


def _within(when: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or when >= start) and (end is None or when <= end)


def apply_weight(score: int, weight: int, allow_negative: bool) -> int:
    """Scores floor at 0 unless the OU allows negative scores."""
    total = score + weight
    return total if allow_negative or total >= 0 else 0


def score_events(
    events: Iterable[EventSpec],
    rulesets: Iterable[RulesetSpec],
    scores: dict[str, int],
    allow_negative: bool = False,
) -> tuple[dict[str, int], list[Delta]]:
    """Apply one lead's events in (occurred_at, id) order; the floor makes order part of the result."""
    rulesets = list(rulesets)
    new_scores = dict(scores)
    deltas: list[Delta] = []
    for ev in sorted(events, key=lambda e: e.order_key):
        for rs in rulesets:
            rule = rs.rule_for(ev.event_type, ev.occurred_at)
            if rule is None:
                continue
            before = new_scores.get(rs.id, 0)
            after = apply_weight(before, rule.weight, allow_negative)
            new_scores[rs.id] = after
            deltas.append(Delta(ev.id, rs.id, rule.id, after - before, after))
    return new_scores, deltas


def primary_score(scores: dict[str, int], primary_id: str | None) -> int:
    """A lead's headline score is its primary ruleset's; without a primary it is 0."""
    return scores.get(primary_id, 0) if primary_id else 0
