"""A backtest: replay an OU's stored events under a ruleset and see how well its levels foretold an outcome (a deal
won, a lifecycle stage reached) and which Slack alerts it would have sent; writes nothing (docs/previews.md)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from operator import attrgetter

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from models.engine import EventSpec, RulesetSpec, score_events
from models.event_queries import SCORING_COLUMNS, stored_spec, stream_in_lead_order
from models.events import SCORED, Event
from models.hubspot import LIFECYCLE_STAGE, PROPERTY_CHANGE
from models.level_rules import LevelSpec, classify
from models.rescore import CHUNK, cooperate
from models.unit_context import UnitContext


@dataclass(frozen=True)
class Outcome:
    """What counts as a lead reaching the outcome: an event of this type, or a HubSpot lifecycle stage change to this
    stage (stored as a contact.propertyChange event by the HubSpot webhook)."""

    event_type: str | None = None
    lifecycle_stage: str | None = None

    def condition(self):
        if self.event_type is not None:
            return Event.event_type == self.event_type
        return and_(
            Event.event_type == PROPERTY_CHANGE,
            Event.metadata_["propertyName"].as_string() == LIFECYCLE_STAGE,
            func.lower(Event.metadata_["propertyValue"].as_string()) == (self.lifecycle_stage or "").lower(),
        )


@dataclass
class VersionResult:
    """One ruleset version's replay: per level, the leads that were in it during the period and how many of them
    reached the outcome after first being in it; the alerts its level entries would have sent or suppressed."""

    spec: RulesetSpec
    entered: Counter = field(default_factory=Counter)  # level id (None: Unclassified) -> leads
    reached: Counter = field(default_factory=Counter)
    alerts_sent: int = 0
    alerts_suppressed: int = 0


@dataclass
class Backtest:
    since: datetime | None
    until: datetime
    levels: list[LevelSpec]
    versions: dict[str, VersionResult]
    leads: int = 0  # leads with a stored event up to until
    reached: int = 0  # of them, those with an outcome in the period
    events: int = 0


@dataclass(frozen=True)
class Replay:
    """What every version's replay shares: the period, the level table, the alert rule and the floor."""

    since: datetime | None
    until: datetime
    ctx: UnitContext  # levels, alert_bar (None: no alert level), allow_negative
    cooldown: timedelta


def run_backtest(
    session: Session, unit_id: str, versions: dict[str, RulesetSpec], outcome: Outcome, replay: Replay
) -> Backtest:
    """Stream the OU's events up to until (scored ones, and outcome events whatever their status) in lead order and
    replay each lead under every version: one lead's events in memory at a time."""
    result = Backtest(replay.since, replay.until, replay.ctx.levels, {k: VersionResult(v) for k, v in versions.items()})
    is_outcome = outcome.condition()
    rows = stream_in_lead_order(
        session,
        select(
            *SCORING_COLUMNS,
            Event.quiet,
            (Event.status == SCORED).label("scores"),
            is_outcome.label("outcome"),
        )
        .where(Event.unit_id == unit_id, or_(Event.status == SCORED, is_outcome), Event.occurred_at <= replay.until)
        .order_by(Event.lead_pk, Event.occurred_at, Event.id),
    )
    level_of = _LevelOf(replay.ctx.levels)
    for n, (_, group) in enumerate(groupby(rows, key=attrgetter("lead_pk")), 1):
        events = list(group)
        periods = [_in_period(e.occurred_at, replay) for e in events]
        outcomes = [(e.occurred_at, e.id) for e, in_period in zip(events, periods) if e.outcome and in_period]
        last_outcome = max(outcomes, default=None)
        result.leads += 1
        result.reached += last_outcome is not None
        result.events += len(events)
        scoring = [stored_spec(e) for e in events if e.scores]
        for version in result.versions.values():
            _replay_lead(version, events, periods, scoring, last_outcome, replay, level_of)
        if n % CHUNK == 0:
            cooperate()
    return result


def _in_period(when: datetime, replay: Replay) -> bool:
    return replay.since is None or when >= replay.since


class _LevelOf(dict):
    """Score -> level id (None: Unclassified) under one level table, each score classified once: a replay asks for
    nearly every event of every version, and the scores a table sees are few."""

    def __init__(self, levels: list[LevelSpec]):
        super().__init__()
        self.levels = levels

    def __missing__(self, score: int) -> str | None:
        level = classify(score, self.levels)
        self[score] = level.id if level else None
        return self[score]


def _replay_lead(
    version: VersionResult,
    events: list,
    periods: list[bool],
    scoring: list[EventSpec],
    last_outcome,
    replay: Replay,
    level_of: _LevelOf,
) -> None:
    """One lead under one version, event by event (as if each were scored on arrival): the levels it was in during
    the period, each with the moment it first was (the period's start for the level it held then), and its alerts.
    periods: whether each event is in the period."""
    ctx = replay.ctx
    _, deltas = score_events(scoring, [version.spec], {}, ctx.allow_negative)
    score_after = {d.event_id: d.score_after for d in deltas}
    score, level, seen, started = 0, None, False, False
    first_in: dict[str | None, tuple] = {}
    last_alert: datetime | None = None
    for e, in_period in zip(events, periods):
        if in_period and not started:
            started = True
            if seen:  # the level the lead held when the period began counts as entered then
                first_in.setdefault(level, (replay.since, 0))
        if e.id in score_after or not seen:
            score = score_after.get(e.id, score)
            new = level_of[score]
        else:
            new = level
        if seen and new == level:
            continue
        if not e.quiet and ctx.enters_alert_level(level, new):  # a lead appears Unclassified, as ingest creates it
            if last_alert is None or e.occurred_at - last_alert >= replay.cooldown:
                last_alert = e.occurred_at
                version.alerts_sent += in_period
            else:
                version.alerts_suppressed += in_period
        level, seen = new, True
        if in_period:
            first_in.setdefault(level, (e.occurred_at, e.id))
    if not started:
        first_in.setdefault(level, (replay.since, 0))
    for level_id, since in first_in.items():
        version.entered[level_id] += 1
        version.reached[level_id] += last_outcome is not None and last_outcome > since
