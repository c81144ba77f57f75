"""The scoring engine: pure functions from events, rules and current scores to new scores and deltas."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from operator import attrgetter
from typing import NamedTuple

DECAY = "DECAY"  # the event type of one decay application (docs/scoring.md); LeadPulse makes these, clients cannot


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

    def scores_at(self, when: datetime) -> bool:
        """Published, active, and its date window holds the moment."""
        return self.published and self.active and _within(when, self.start_date, self.end_date)


class EventSpec(NamedTuple):
    """One event as the engine takes it; a tuple because a replay makes one per stored event, and a tuple costs a
    fraction of a frozen dataclass to make (docs/previews.md, "Limits")."""

    id: int
    event_type: str
    occurred_at: datetime
    # A system event (DECAY) scores these points in every ruleset scoring at its time, not by a rule of its type.
    points: int | None = None
    rule_id: str | None = None  # what a system event's deltas name (the decay rule)
    since: datetime | None = None  # a DECAY's inactivity start: the lead's last activity before it must be then

    @property
    def order_key(self) -> tuple[datetime, int]:
        return (self.occurred_at, self.id)

    @property
    def is_activity(self) -> bool:
        """Every event but a DECAY is activity: it restarts the inactivity clock."""
        return self.event_type != DECAY


# The order events are applied in, as a sort key made in C (order_key's (occurred_at, id)).
IN_ORDER = attrgetter("occurred_at", "id")


def event_spec(event_id: int, event_type: str, occurred_at: datetime, system: dict | None = None) -> EventSpec:
    """The engine's view of a stored event; a DECAY's decrease, rule and inactivity start are in its metadata."""
    if event_type != DECAY:
        return EventSpec(event_id, event_type, occurred_at)
    system = system or {}
    since = system.get("since")
    return EventSpec(
        event_id,
        event_type,
        occurred_at,
        points=-int(system.get("decrease") or 0),
        rule_id=system.get("decay_id"),
        since=datetime.fromisoformat(since) if isinstance(since, str) else None,
    )


def void_decays(events: Iterable[EventSpec], last_activity: datetime | None = None) -> set[int]:
    """Ids of the DECAY events whose inactivity did not hold: the lead's last activity before one (last_activity
    before these events, then theirs) is not the moment it counts from. A late, deleted or merged event makes them so;
    they are kept, never scored."""
    void = set()
    for ev in sorted(events, key=IN_ORDER):
        if ev.is_activity:
            last_activity = ev.occurred_at if last_activity is None else max(last_activity, ev.occurred_at)
        elif ev.since is None or last_activity != ev.since:
            void.add(ev.id)
    return void


class Delta(NamedTuple):
    """What one event did to one ruleset's score (a tuple, as EventSpec: a replay makes one per scored event)."""

    event_id: int
    ruleset_id: str
    rule_id: str | None
    delta: int
    score_after: int


def _within(when: datetime, start: datetime | None, end: datetime | None) -> bool:
    return (start is None or when >= start) and (end is None or when <= end)


def score_events(
    events: Iterable[EventSpec],
    rulesets: Iterable[RulesetSpec],
    scores: dict[str, int],
    allow_negative: bool = False,
) -> tuple[dict[str, int], list[Delta]]:
    """Apply one lead's events in (occurred_at, id) order; the floor makes order part of the result. Written as one
    loop without helper calls: it runs once per event and ruleset of every replay (docs/previews.md, "Limits")."""
    rulesets = list(rulesets)
    new_scores = dict(scores)
    deltas: list[Delta] = []
    for ev in sorted(events, key=IN_ORDER):
        when = ev.occurred_at
        for rs in rulesets:
            if not rs.scores_at(when):
                continue
            if ev.points is not None:  # a system event: its own points wherever the ruleset scores at its time
                weight, rule_id = ev.points, ev.rule_id
            else:  # the ruleset's rule for the type, if its own window holds the moment
                rule = rs.rules.get(ev.event_type)
                if rule is None or not rule.applies_at(when):
                    continue
                weight, rule_id = rule.weight, rule.id
            before = new_scores.get(rs.id, 0)
            after = before + weight
            if after < 0 and not allow_negative:  # scores floor at 0 unless the OU allows negative scores
                after = 0
            new_scores[rs.id] = after
            deltas.append(Delta(ev.id, rs.id, rule_id, after - before, after))
    return new_scores, deltas


def primary_score(scores: dict[str, int], primary_id: str | None) -> int:
    """A lead's headline score is its primary ruleset's; without a primary it is 0."""
    return scores.get(primary_id, 0) if primary_id else 0
