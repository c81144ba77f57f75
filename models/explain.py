"""Why a lead has its score: its stored deltas read against the published rules they were computed with.

Every stored delta was made with its ruleset's published snapshot (publishing rescores everything), so the points a
delta meant are its rule's snapshot weight, or `-decrease` for a DECAY event; what the floor changed is the delta minus
that. The same grouped read feeds the explanation, the ledger, Slack's "why" and HubSpot's engagement_top_drivers
(docs/explanations.md).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, aliased

from models.base import utcnow
from models.engine import DECAY
from models.events import STATUS_NAMES, Event, ScoreDelta
from models.lead_ops import lead_score
from models.leads import Lead
from models.scoring import PUBLISHED, LeadScore, Ruleset

WHY_DAYS = 30  # the window of the "why" that Slack alerts and HubSpot carry
WHY_DRIVERS = 3


@dataclass(frozen=True)
class Driver:
    """Points one rule (or decay rule) gave in a window: its snapshot weight times its count (or the decay taken)."""

    event_type: str
    rule_id: str | None
    points: int
    count: int


@dataclass(frozen=True)
class Part:
    """One line of a ledger: kind "rule", "decay" or "floor" (what the floor at 0 added back)."""

    kind: str
    points: int
    count: int
    rule_id: str | None = None
    event_type: str | None = None
    weight: int | None = None


@dataclass
class Ledger:
    """A ruleset's stored score for a lead and the parts it is made of."""

    ruleset_id: str
    name: str
    is_primary: bool
    status: str
    score: int
    parts: list[Part] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(p.points for p in self.parts)


@dataclass(frozen=True)
class SnapshotRule:
    ruleset_id: str
    rule_id: str
    event_type: str
    weight: int
    active: bool
    start_at: str | None
    end_at: str | None


@dataclass
class Explanation:
    lead_id: str
    ruleset_id: str | None
    score: int
    range_hours: int
    top_drivers: list[Driver]
    snapshot: list[SnapshotRule]
    decay_applied: int
    ledger: list[Ledger]
    surge_boost: list = field(default_factory=list)  # no surge multiplier exists yet: nothing is boosted
    surge_total: int = 0
    surge_event_count: int = 0
    decay_forecast: dict | None = None  # shown as the lead detail shows it (webapp/representations.py)


@dataclass(frozen=True)
class EventRulesetScore:
    ruleset_id: str
    name: str
    is_primary: bool
    rule_id: str | None
    points: int
    floor_adjustment: int
    delta: int
    score_before: int
    score_after: int


@dataclass
class EventScore:
    event_id: str
    lead_id: str
    event_type: str
    occurred_at: datetime
    status: str
    rulesets: list[EventRulesetScore]


@dataclass(frozen=True)
class _Group:
    lead_pk: int
    ruleset_id: str
    event_type: str
    rule_id: str | None
    count: int
    points: int  # what the rule meant: weight x count, or the decay taken
    delta: int  # what was applied
    floored: int  # how many of these deltas the floor changed


def _rulesets(session: Session, unit_id: str) -> list[Ruleset]:
    """The OU's rulesets, primary first, then oldest first."""
    return list(
        session.execute(
            select(Ruleset)
            .where(Ruleset.unit_id == unit_id)
            .order_by(Ruleset.is_primary.desc(), Ruleset.created_at, Ruleset.id)
        ).scalars()
    )


def _intended(rulesets: list[Ruleset]):
    """SQL for the points a delta meant: -decrease on a DECAY event, else its rule's published weight.

    A rule_id no snapshot knows (never expected: publishing rescores) counts as meant, so it shows no floor. Only a
    DECAY's row is read for its decrease: the other events' types come from the (lead, time) index alone."""
    weights = {r["id"]: r["weight"] for rs in rulesets for r in rs.published_rules or []}
    by_rule = case(weights, value=ScoreDelta.rule_id, else_=ScoreDelta.delta) if weights else ScoreDelta.delta
    decay = aliased(Event)
    decrease = (  # as models.engine.event_spec reads it
        select(func.coalesce(decay.metadata_["decrease"].as_integer(), 0))
        .where(decay.id == ScoreDelta.event_id)
        .scalar_subquery()
    )
    return case((Event.event_type == DECAY, -decrease), else_=by_rule)


def _groups(
    session: Session, rulesets: list[Ruleset], lead_pks: list[int], ruleset_ids: list[str], since: datetime | None
) -> list[_Group]:
    """Each lead's deltas grouped by ruleset, event type and rule: one query for any number of leads, its deltas and
    its events' types each read from one range of a covering index (a delta's event is always its lead's)."""
    if not lead_pks or not ruleset_ids:
        return []
    intended = _intended(rulesets)
    stmt = (
        select(
            ScoreDelta.lead_pk,
            ScoreDelta.ruleset_id,
            Event.event_type,
            ScoreDelta.rule_id,
            func.count().label("count"),
            func.sum(intended).label("points"),
            func.sum(ScoreDelta.delta).label("delta"),
            func.sum(case((ScoreDelta.delta != intended, 1), else_=0)).label("floored"),
        )
        .join(Event, Event.id == ScoreDelta.event_id)
        .where(ScoreDelta.lead_pk.in_(lead_pks), ScoreDelta.ruleset_id.in_(ruleset_ids), Event.lead_pk.in_(lead_pks))
        .group_by(ScoreDelta.lead_pk, ScoreDelta.ruleset_id, Event.event_type, ScoreDelta.rule_id)
    )
    if since is not None:  # the window's events by the (lead, time) index, not every delta of a busy lead
        stmt = stmt.where(Event.occurred_at >= since)
    return [
        _Group(
            r.lead_pk, r.ruleset_id, r.event_type, r.rule_id, r.count, int(r.points or 0), int(r.delta or 0), r.floored
        )
        for r in session.execute(stmt)
    ]


def _drivers(groups: list[_Group]) -> list[Driver]:
    """Most points first (ties by event type), decay included: it is a reason too."""
    drivers = [Driver(g.event_type, g.rule_id, g.points, g.count) for g in groups]
    return sorted(drivers, key=lambda d: (-d.points, d.event_type, d.rule_id or ""))


def top_drivers(
    session: Session, unit_id: str, lead_pks: list[int], since: datetime | None, ruleset_id: str | None = None
) -> dict[int, list[Driver]]:
    """Per lead, the rules that gave it points since `since` in one ruleset (the primary unless named)."""
    return _top_drivers(session, _rulesets(session, unit_id), lead_pks, since, ruleset_id)


def _top_drivers(
    session: Session, rulesets: list[Ruleset], lead_pks: list[int], since: datetime | None, ruleset_id: str | None
) -> dict[int, list[Driver]]:
    chosen = ruleset_id or next((rs.id for rs in rulesets if rs.is_primary), None)
    if chosen is None:
        return {}
    by_lead: dict[int, list[_Group]] = defaultdict(list)
    for g in _groups(session, rulesets, lead_pks, [chosen], since):
        by_lead[g.lead_pk].append(g)
    return {pk: _drivers(groups) for pk, groups in by_lead.items()}


def driver_text(drivers: list[Driver], most: int = WHY_DRIVERS) -> str:
    """'demo_request +60, page_view +15': the strongest drivers, as one line of text."""
    return ", ".join(f"{d.event_type} {d.points:+d}" for d in drivers[:most] if d.points)


def why(session: Session, unit_id: str, lead_pks: list[int], now: datetime | None = None) -> dict[int, str]:
    """What Slack alerts and HubSpot say about each lead: its top drivers of the last WHY_DAYS days, as text."""
    since = (now or utcnow()) - timedelta(days=WHY_DAYS)
    return {pk: driver_text(d) for pk, d in top_drivers(session, unit_id, lead_pks, since).items()}


def _ledger(rs: Ruleset, score: int, groups: list[_Group]) -> Ledger:
    weights = {r["id"]: r["weight"] for r in rs.published_rules or []}
    parts = [
        Part("decay", g.points, g.count, g.rule_id, g.event_type)
        if g.event_type == DECAY
        else Part("rule", g.points, g.count, g.rule_id, g.event_type, weights.get(g.rule_id))
        for g in sorted(groups, key=lambda g: (g.event_type == DECAY, -g.points, g.event_type, g.rule_id or ""))
    ]
    floor = sum(g.delta - g.points for g in groups)
    parts.append(Part("floor", floor, sum(g.floored for g in groups)))
    return Ledger(rs.id, rs.name, rs.is_primary, rs.status, score, parts)


def ledgers(session: Session, unit_id: str, lead_pks: list[int]) -> dict[int, list[Ledger]]:
    """Per lead, every ruleset's stored score (primary first) broken into rules, decay and the floor's adjustment."""
    rulesets = _rulesets(session, unit_id)
    if not lead_pks or not rulesets:
        return {pk: [] for pk in lead_pks}
    scores = {
        (r.lead_pk, r.ruleset_id): r.score
        for r in session.execute(
            select(LeadScore.lead_pk, LeadScore.ruleset_id, LeadScore.score).where(LeadScore.lead_pk.in_(lead_pks))
        )
    }
    grouped: dict[tuple[int, str], list[_Group]] = defaultdict(list)
    for g in _groups(session, rulesets, lead_pks, [rs.id for rs in rulesets], None):
        grouped[(g.lead_pk, g.ruleset_id)].append(g)
    return {pk: [_ledger(rs, scores.get((pk, rs.id), 0), grouped[(pk, rs.id)]) for rs in rulesets] for pk in lead_pks}


def snapshot(rulesets: list[Ruleset]) -> list[SnapshotRule]:
    """The published rules as they score now, primary ruleset first."""
    return [
        SnapshotRule(rs.id, r["id"], r["event_type"], r["weight"], r["active"], r["start_at"], r["end_at"])
        for rs in rulesets
        if rs.status == PUBLISHED
        for r in rs.published_rules or []
    ]


def explain_lead(session: Session, lead: Lead, hours: int, now: datetime | None = None) -> Explanation:
    """GET /lead/{id}/score-explain: the drivers of the last `hours` in the ruleset the lead's score is read from
    (the primary, else its highest), the published weights, and every ruleset's ledger."""
    since = (now or utcnow()) - timedelta(hours=hours)
    ruleset_id, score, _ = lead_score(session, lead, None)
    rulesets = _rulesets(session, lead.unit_id)
    drivers = _top_drivers(session, rulesets, [lead.pk], since, ruleset_id or None).get(lead.pk, [])
    return Explanation(
        lead_id=lead.lead_id,
        ruleset_id=ruleset_id or None,
        score=score,
        range_hours=hours,
        top_drivers=drivers,
        snapshot=snapshot(rulesets),
        decay_applied=sum(d.points for d in drivers if d.event_type == DECAY),
        ledger=ledgers(session, lead.unit_id, [lead.pk])[lead.pk],
    )


def event_score(session: Session, unit_id: str, event_id: int) -> EventScore | None:
    """GET /event/{id}/score: what the event did to each ruleset's score; None when the OU has no such event."""
    row = session.execute(
        select(Event.id, Event.event_type, Event.occurred_at, Event.status, Lead.lead_id)
        .join(Lead, Lead.pk == Event.lead_pk)
        .where(Event.unit_id == unit_id, Event.id == event_id)
    ).first()
    if row is None:
        return None
    rulesets = _rulesets(session, unit_id)
    order = {rs.id: n for n, rs in enumerate(rulesets)}
    names = {rs.id: rs for rs in rulesets}
    intended = _intended(rulesets).label("points")
    deltas = session.execute(
        select(ScoreDelta.ruleset_id, ScoreDelta.rule_id, ScoreDelta.delta, ScoreDelta.score_after, intended)
        .join(Event, Event.id == ScoreDelta.event_id)
        .where(ScoreDelta.event_id == event_id)
    ).all()
    lines = [
        EventRulesetScore(
            d.ruleset_id,
            names[d.ruleset_id].name,
            names[d.ruleset_id].is_primary,
            d.rule_id,
            int(d.points),
            d.delta - int(d.points),
            d.delta,
            d.score_after - d.delta,
            d.score_after,
        )
        for d in sorted(deltas, key=lambda d: order.get(d.ruleset_id, len(order)))
        if d.ruleset_id in names
    ]
    return EventScore(
        str(row.id), row.lead_id, row.event_type, row.occurred_at, STATUS_NAMES.get(row.status, "suppressed"), lines
    )
