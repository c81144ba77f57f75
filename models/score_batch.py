"""Scoring a batch of pending events: set-based reads, per-lead pure scoring, set-based writes."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import delete, exists, func, literal, select, true, union_all, update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.decay_pass import look_again
from models.dialect import insert_for
from models.engine import EventSpec, primary_score, score_events, void_decays
from models.event_queries import SCORING_COLUMNS, stored_spec
from models.events import PENDING, SCORED, SUPPRESSED, Event, ScoreDelta
from models.leads import Lead
from models.level_rules import classify
from models.levels import LeadLevelChange
from models.locks import lock_unit
from models.scoring import LeadScore
from models.tenancy import OrgUnit
from models.unit_context import load_contexts


@dataclass
class BatchResult:
    events: int = 0
    leads: int = 0
    level_changes: int = 0
    replays: int = 0
    changed_units: set = field(default_factory=set)  # OUs with a lead whose score or level changed
    level_units: set = field(default_factory=set)  # OUs with a lead that entered its alert level (wake the alert job)
    updates: list = field(default_factory=list)  # (unit_id, lead_id, score, level_id, old level_id) per changed lead


def _partition(slot: int, slots: int):
    """Leads are split among scoring slots so parallel jobs never contend for the same lead."""
    return (Event.lead_pk % slots == slot) if slots > 1 else true()


# A literal, not a parameter: the planners use the partial indexes on "status = 0" only for that very constant
# (SQLite always; PostgreSQL on a generic plan).
IS_PENDING = Event.status == literal(PENDING, literal_execute=True)


def has_pending(session: Session, slot: int = 0, slots: int = 1) -> bool:
    return bool(session.execute(select(exists().where(IS_PENDING, _partition(slot, slots)))).scalar())


UNITS_PER_PASS = 100  # OUs served by one pass at most: those waiting longest (SQLite caps a UNION at 500 terms)
READ_FACTOR = 4  # a pass reads at most this many times `limit` events, however its OUs and leads are spread


def _first_pending(slot: int, slots: int):
    """The id of the OU's (OrgUnit in the outer query) first pending event of this slot: one index probe."""
    return (
        select(Event.id)
        .where(Event.unit_id == OrgUnit.id, IS_PENDING, _partition(slot, slots))
        .order_by(Event.id)
        .limit(1)
        .scalar_subquery()
    )


def oldest_pending(session: Session):
    """When the event waiting longest to be scored was received (None: none waits)."""
    return session.execute(select(Event.received_at).where(IS_PENDING).order_by(Event.id).limit(1)).scalar()


def pending_count(session: Session) -> int:
    return session.execute(select(func.count()).select_from(Event).where(IS_PENDING)).scalar()


def waiting_units(session: Session, slot: int, slots: int, most: int = UNITS_PER_PASS) -> list[str]:
    """OUs with pending events in this slot, the one waiting longest first: one index probe per OU."""
    units = select(OrgUnit.id, _first_pending(slot, slots).label("oldest")).subquery()
    return list(
        session.execute(
            select(units.c.id).where(units.c.oldest.isnot(None)).order_by(units.c.oldest).limit(most)
        ).scalars()
    )


def _union(statements: list):
    """The statements' rows as one subquery, each statement keeping its own ORDER BY and LIMIT."""
    return union_all(*(select(stmt.subquery()) for stmt in statements)).subquery()


def fair_candidates(session: Session, slot: int, slots: int, limit: int) -> dict[str, list[int]]:
    """Up to `limit` pending events of this slot, taken round-robin across OUs (each OU's oldest first, a capped
    index range per OU): however large one OU's backlog, another OU's events go in the next pass. Their leads by OU.
    """
    units = waiting_units(session, slot, slots)
    cap = min(limit, -(-READ_FACTOR * limit // max(len(units), 1)))  # READ_FACTOR x limit rows read at most
    per_unit = [
        select(Event.unit_id, Event.lead_pk, Event.id)
        .where(Event.unit_id == unit_id, IS_PENDING, _partition(slot, slots))
        .order_by(Event.id)
        .limit(cap)
        for unit_id in units
    ]
    if len(per_unit) > 1:  # each OU's first event, then each one's second, ...
        events = _union(per_unit)
        turn = func.row_number().over(partition_by=events.c.unit_id, order_by=events.c.id).label("turn")
        ranked = select(events.c.unit_id, events.c.lead_pk, events.c.id, turn).subquery()
        per_unit = [select(ranked.c.unit_id, ranked.c.lead_pk).order_by(ranked.c.turn, ranked.c.id).limit(limit)]
    by_unit: dict[str, list[int]] = defaultdict(list)
    for statement in per_unit:
        for row in session.execute(statement):
            by_unit[row.unit_id].append(row.lead_pk)
    return by_unit


VOID_REASON = "decay void: the lead was active after the inactivity it counts from"


def pending_of(session: Session, chosen: dict[str, list[int]]) -> list:
    """The chosen leads' pending events in scoring order, each OU's leads at most READ_FACTOR x its picked events
    (a prefix per lead: the rest waits for the next pass), so one OU's crowded leads never crowd out another's."""
    statements = [
        select(*SCORING_COLUMNS, Event.quiet)
        .where(Event.lead_pk.in_(sorted(set(picked))), IS_PENDING)
        .order_by(Event.lead_pk, Event.occurred_at, Event.id)
        .limit(READ_FACTOR * len(picked))
        for picked in chosen.values()
        if picked
    ]
    if len(statements) > 1:
        rows = _union(statements)
        statements = [select(rows).order_by(rows.c.lead_pk, rows.c.occurred_at, rows.c.id)]
    return session.execute(statements[0]).all() if statements else []


def score_pending(session: Session, *, slot: int = 0, slots: int = 1, limit: int = 2000) -> BatchResult:
    """Score up to ~limit pending events of this slot's leads in the caller's transaction."""
    chosen = fair_candidates(session, slot, slots, limit)
    lead_pks = sorted({pk for pks in chosen.values() for pk in pks})
    if not lead_pks:
        return BatchResult()
    # Shared OU locks (sorted), then the leads (pk order, like every other writer), then config and scores.
    for unit_id in sorted(set(session.execute(select(Lead.unit_id).where(Lead.pk.in_(lead_pks))).scalars())):
        lock_unit(session, unit_id, shared=True)
    leads = {
        r.pk: r
        for r in session.execute(
            select(
                Lead.pk,
                Lead.unit_id,
                Lead.lead_id,
                Lead.score,
                Lead.level_id,
                Lead.last_event_at,
                Lead.scored_through_at,
                Lead.scored_through_id,
            )
            .where(Lead.pk.in_(lead_pks))
            .order_by(Lead.pk)
            .with_for_update(key_share=True)
        )
    }
    pending = pending_of(
        session, {unit: [pk for pk in pks if pk in leads] for unit, pks in chosen.items()}
    )  # not deleted
    if not pending:
        return BatchResult()
    by_lead: dict[int, list[EventSpec]] = defaultdict(list)
    loud: set[int] = set()  # leads with an event that may alert (not imported with skip_triggers)
    for e in pending:
        by_lead[e.lead_pk].append(stored_spec(e))
        if not e.quiet:
            loud.add(e.lead_pk)

    replay = {pk for pk, evs in by_lead.items() if _arrives_late(leads[pk], evs[0])}
    if replay:
        for e in session.execute(select(*SCORING_COLUMNS).where(Event.lead_pk.in_(replay), Event.status == SCORED)):
            by_lead[e.lead_pk].append(stored_spec(e))
    void = _void_decays(by_lead, leads, replay)
    current: dict[int, dict[str, int]] = defaultdict(dict)
    for r in session.execute(
        select(LeadScore.lead_pk, LeadScore.ruleset_id, LeadScore.score).where(LeadScore.lead_pk.in_(list(by_lead)))
    ):
        current[r.lead_pk][r.ruleset_id] = r.score

    contexts = load_contexts(session, {leads[pk].unit_id for pk in by_lead})
    # A replay rebuilds only the rulesets that score now; a paused ruleset keeps what it had.
    applicable = {rs.id for ctx in contexts.values() for rs in ctx.rulesets if rs.active}
    for pk in replay:
        current[pk] = {rs: s for rs, s in current[pk].items() if rs not in applicable}
    now = utcnow()
    score_rows, delta_rows, lead_rows, change_rows = [], [], [], []
    restarted: dict[int, tuple[str, bool]] = {}
    changed_units: set[str] = set()
    level_units: set[str] = set()
    updates: list[tuple] = []
    for pk, evs in by_lead.items():
        lead = leads[pk]
        ctx = contexts[lead.unit_id]
        before = current.get(pk, {})
        after, deltas = score_events([e for e in evs if e.id not in void], ctx.rulesets, before, ctx.allow_negative)
        score_rows += [
            dict(lead_pk=pk, ruleset_id=rs, unit_id=lead.unit_id, score=s, updated_at=now)
            for rs, s in after.items()
            if pk in replay or before.get(rs) != s
        ]
        delta_rows += [
            dict(
                event_id=d.event_id,
                ruleset_id=d.ruleset_id,
                lead_pk=pk,
                rule_id=d.rule_id,
                delta=d.delta,
                score_after=d.score_after,
            )
            for d in deltas
        ]
        new_score = primary_score(after, ctx.primary_id)
        level = classify(new_score, ctx.levels)
        level_id = level.id if level else None
        newest = max(evs, key=lambda e: e.order_key)
        row = dict(
            pk=pk,
            score=new_score,
            level_id=level_id,
            updated_at=now,
            scored_through_at=newest.occurred_at,
            scored_through_id=newest.id,
        )
        active = max((e for e in evs if e.is_activity), key=lambda e: e.order_key, default=None)
        if active is not None and (
            pk in replay or lead.last_event_at is None or active.occurred_at >= lead.last_event_at
        ):
            # a DECAY is no activity; new activity restarts the inactivity clock (models/decay_pass.py looks again)
            row.update(last_event_at=active.occurred_at, last_event_type=active.event_type)
            restarted[pk] = (lead.unit_id, pk in replay or lead.last_event_at is None)
        if new_score != lead.score or level_id != lead.level_id:
            changed_units.add(lead.unit_id)
            updates.append((lead.unit_id, lead.lead_id, new_score, level_id, lead.level_id))
        if level_id != lead.level_id:
            row["level_changed_at"] = now
            if pk in loud and ctx.enters_alert_level(lead.level_id, level_id):
                level_units.add(lead.unit_id)  # other moves are examined by the sweep, with no hurry
            change_rows.append(
                dict(
                    unit_id=lead.unit_id,
                    lead_pk=pk,
                    from_level_id=lead.level_id,
                    to_level_id=level_id,
                    score=new_score,
                    cause="score",
                    changed_at=now,
                    alert_checked=pk not in loud,
                )
            )
        lead_rows.append(row)

    event_ids = [e.id for e in pending]
    scored = [i for i in event_ids if i not in void]
    if scored:
        session.execute(update(Event).where(Event.id.in_(scored)).values(status=SCORED, scored_at=now))
    if void:
        session.execute(
            update(Event)
            .where(Event.id.in_(sorted(void)))
            .values(status=SUPPRESSED, suppressed_reason=VOID_REASON, scored_at=None)
        )
    if replay and applicable:
        session.execute(delete(ScoreDelta).where(ScoreDelta.lead_pk.in_(replay), ScoreDelta.ruleset_id.in_(applicable)))
        session.execute(delete(LeadScore).where(LeadScore.lead_pk.in_(replay), LeadScore.ruleset_id.in_(applicable)))
    if delta_rows:
        session.execute(insert_for(session, ScoreDelta), delta_rows)
    if score_rows:
        stmt = insert_for(session, LeadScore)
        stmt = stmt.on_conflict_do_update(
            index_elements=["lead_pk", "ruleset_id"],
            set_={"score": stmt.excluded.score, "updated_at": stmt.excluded.updated_at},
        )
        session.execute(stmt, score_rows)
    _update_leads(session, lead_rows)
    look_again(session, restarted)
    if change_rows:
        session.execute(insert_for(session, LeadLevelChange), change_rows)
    return BatchResult(
        len(event_ids), len(lead_rows), len(change_rows), len(replay), changed_units, level_units, updates
    )


def _void_decays(by_lead: dict[int, list[EventSpec]], leads: dict, replay: set[int]) -> set[int]:
    """The DECAY events among these that the leads' activity voids: a replayed lead's from its whole history, another's
    from its last scored activity on (last_event_at, which only scoring sets)."""
    return {
        i
        for pk, evs in by_lead.items()
        if any(not e.is_activity for e in evs)
        for i in void_decays(evs, None if pk in replay else leads[pk].last_event_at)
    }


def _update_leads(session: Session, rows: list[dict]) -> None:
    """Bulk UPDATE by primary key, grouped by the set of columns each row carries."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[tuple(sorted(row))].append(row)
    for group in groups.values():
        session.execute(update(Lead), group)


def _arrives_late(lead, first: EventSpec) -> bool:
    """An event sorting before what was already applied means the floor must be replayed from the start."""
    if lead.scored_through_at is None:
        return False
    return first.order_key < (lead.scored_through_at, lead.scored_through_id or 0)
