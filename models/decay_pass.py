"""Applying decay: set-based over every inactive lead of every OU, each elapsed period once, however it runs.

A pass stores one DECAY event per (decay rule, lead, period) that ended by `now` since the lead's last activity, as
pending events that scoring then applies like any other (docs/scoring.md, "Decay"). Each is stored once because the
lead's row is locked while its periods are stored and its bookkeeping advanced in the same transaction: a second pass,
a concurrent one, or one after days of downtime starts after what the first recorded, and a lead whose bookkeeping
counts from another activity than its last (first seen, its last event deleted, a lead merged into it) is checked
against its stored DECAY events period by period. No idempotency key: that unique index cost a third of each insert.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    MetaData,
    String,
    Table,
    and_,
    case,
    distinct,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.orm import Session

from models.base import UTCDateTime, to_micros, utcnow
from models.dialect import epoch_us, from_epoch_us, insert_for, json_object, rfc3339_text
from models.engine import DECAY
from models.events import PENDING, Event
from models.leads import Lead, LeadDecay
from models.locks import lock_unit
from models.scoring import DECAY_UNITS, DecayRule

# Leads per transaction: their rows stay locked (scoring of one of them waits) only that long: ~3.5 s in a pass over a
# million on a 2-vCPU server, longer where a lead has more periods due. Against 20,000: 8% less time and CPU for that
# pass (fewer temporary tables, statements and commits); the passes every few minutes after it hold few leads.
CHUNK = 50000
# Chunks stored at once on PostgreSQL, each stream on its own connection over its own range of leads: a pass is the
# database's CPU, and one backend uses one core (docs/scoring.md). Disjoint leads, so no stream waits on another; two
# at once are two concurrent passes, which the row locks already keep exact. Leads made during the pass (pk above
# the split) are the last stream's. Three on two cores: while one backend waits to write WAL, another computes.
STREAMS = 3

# The leads a chunk works on, as read (and row-locked) once: the events stored and the bookkeeping written after them
# both follow this one reading, whatever commits in between.
DUE = Table(
    "decay_due_tmp",
    MetaData(),
    Column("pk", BigInteger, primary_key=True),
    Column("org_id", String(36)),
    Column("unit_id", String(36)),
    Column("anchor", UTCDateTime),  # the lead's last activity
    Column("anchor_us", BigInteger),
    Column("checked_us", BigInteger),  # periods up to here were applied for this anchor (None: none yet)
    prefixes=["TEMPORARY"],
)
EVENTS = Event.__table__
INSERTED = ("org_id", "unit_id", "lead_pk", "event_type", "occurred_at", "received_at", "metadata")
STORED = EVENTS.alias("stored")  # the lead's DECAY events already there, read by the statement that adds more

KEY_PREFIX = "decay:"  # DECAY events stored before 0021 carry such idempotency keys; a client's event_id may not


@dataclass
class DecayRun:
    """What one pass stored: DECAY events and the leads they belong to, per OU."""

    at: datetime
    units: dict[str, dict[str, int]] = field(default_factory=dict)  # unit_id -> {"leads": n, "events": n}

    @property
    def events(self) -> int:
        return sum(u["events"] for u in self.units.values())

    @property
    def leads(self) -> int:
        return sum(u["leads"] for u in self.units.values())

    def add(self, counts: list[tuple[str, int, int]]) -> None:
        for unit_id, leads, events in counts:  # a lead is in one chunk only
            totals = self.units.setdefault(unit_id, {"leads": 0, "events": 0})
            totals["leads"] += leads
            totals["events"] += events

    def as_dict(self) -> dict:
        return {
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "leads": self.leads,
            "events": self.events,
            "units": [{"unit_id": u, **counts} for u, counts in sorted(self.units.items())],
        }


def run_decay(
    Session, now: datetime | None = None, unit_id: str | None = None, chunk: int = CHUNK, streams: int = STREAMS
) -> DecayRun:
    """Store every decay period that ended by now and is not stored yet (of one OU, or all), a chunk of leads per
    transaction; the schedule (worker/jobs.py apply_decay) and `leadpulse decay run` both run this."""
    run = DecayRun(now or utcnow())
    with Session() as s:
        top = s.execute(select(func.max(LeadDecay.lead_pk))).scalar() or 0
        if s.get_bind().dialect.name != "postgresql":
            streams = 1  # one writer at a time anyway
    # each stream its own pk range: its leads, their pages and their locks are nobody else's
    bounds = [top * n // streams for n in range(streams)] + [None]
    with ThreadPoolExecutor(streams) as pool:
        parts = pool.map(
            lambda n: list(_stream(Session, run.at, unit_id, chunk, bounds[n], bounds[n + 1])), range(streams)
        )
        for counts in (counts for part in parts for counts in part):
            run.add(counts)
    return run


def _stream(Session, at: datetime, unit_id: str | None, chunk: int, after: int, upto: int | None):
    """One connection's share of a pass: the due leads with pk in (after, upto], a transaction per chunk."""
    while True:
        with Session() as s, s.begin():
            last, counts = decay_chunk(s, at, unit_id, after, chunk, upto)
        yield counts
        if last is None:
            return
        after = last


def _greater(a, b):
    return case((a > b, a), else_=b)


def period_us(rule=DecayRule):
    """A decay rule's period in microseconds."""
    per_unit = case(
        *(
            (rule.unit == name, literal_column(str(seconds * 1_000_000), BigInteger))
            for name, seconds in DECAY_UNITS.items()
        )
    )
    return per_unit * rule.inactive_for


def _text(value: str):
    """A constant string inside SQL (jsonb_build_object takes no untyped parameter)."""
    return literal_column("'" + value.replace("'", "''") + "'", String)


def decay_chunk(
    session: Session, now: datetime, unit_id: str | None, after: int, limit: int, upto: int | None = None
) -> tuple[int | None, list[tuple[str, int]]]:
    """Up to `limit` due leads with pk above `after` (and at most `upto`): store their DECAY events, then when their
    next period ends.
    Returns (the chunk's highest pk, or None when no lead was due; (unit_id, leads, events) stored per OU)."""
    rule_units = select(DecayRule.unit_id).distinct()
    if unit_id is not None:
        rule_units = rule_units.where(DecayRule.unit_id == unit_id)
    units = sorted(session.execute(rule_units).scalars())
    if not units:
        return None, []
    for unit in units:  # shared, as scoring takes them: a rule edit (exclusive) never lands mid-chunk
        lock_unit(session, unit, shared=True)
    if session.get_bind().dialect.name == "postgresql":
        # The chunk's events and the bookkeeping that records them commit as one: a commit lost in a crash loses both,
        # and the next pass stores those periods again from the bookkeeping as it was. Whatever builds on them (the
        # scoring of its events) commits synchronously after it, and that flush carries this commit's record too.
        session.execute(text("SET LOCAL synchronous_commit = off"))
    now_us = to_micros(now)
    DUE.create(session.connection())
    book = LeadDecay
    same_anchor = book.anchor_at == Lead.last_event_at
    due = (
        select(
            Lead.pk,
            Lead.org_id,
            Lead.unit_id,
            Lead.last_event_at,
            epoch_us(Lead.last_event_at),
            case((same_anchor, epoch_us(book.checked_at)), else_=null()),
        )
        .join_from(Lead, book, book.lead_pk == Lead.pk)
        .where(
            book.unit_id.in_(units),
            or_(book.next_at.is_(None), book.next_at <= now),
            book.lead_pk > after,
            Lead.pk > after,  # the range on both sides of the join: the planner reaches either by its key
            *([book.lead_pk <= upto, Lead.pk <= upto] if upto is not None else []),
            Lead.merged_into.is_(None),
            Lead.last_event_at.isnot(None),
        )
        .order_by(book.lead_pk)
        .limit(limit)
        # In pk order, the lead first as scoring locks leads (it writes the bookkeeping only after). Both rows: a
        # second pass that waited for them then reads the bookkeeping the first one wrote, not the one it saw before.
        .with_for_update(key_share=True, of=[Lead, book])
    )
    # The bookkeeping is read in key order from `after`, due or not (its due time is in no index, so that a pass and
    # scoring rewrite it in place): a pass reads each row of its OUs once, ~0.2 s per million leads.
    # Not analyzed: the planner sizes a fresh table by its pages, and the joins below reach the leads by the chunk's pk
    # range whatever it estimates, so an ANALYZE (a statement and catalog writes per chunk) bought no better plan.
    session.execute(insert(DUE).from_select([c.name for c in DUE.c], due))
    last = session.execute(select(func.max(DUE.c.pk))).scalar()
    counts = _stored_counts(session, _store_periods(now, now_us)) if last is not None else []
    if last is not None:
        session.execute(_schedule_next(now, now_us, after, last))
    DUE.drop(session.connection())
    return last, counts


def _stored_counts(session: Session, stored) -> list[tuple[str, int, int]]:
    """Run the INSERT; (unit_id, leads, events) it stored per OU. PostgreSQL counts them itself: a row per event sent
    back and gathered in Python cost the pass ~2 us per event; SQLite has no INSERT inside a WITH."""
    if session.get_bind().dialect.name == "postgresql":
        rows = stored.cte("stored")
        counts = select(rows.c.unit_id, func.count(distinct(rows.c.lead_pk)), func.count()).group_by(rows.c.unit_id)
        return [tuple(row) for row in session.execute(counts)]
    leads: dict[str, set[int]] = defaultdict(set)
    events: dict[str, int] = defaultdict(int)
    for unit_id, lead_pk in session.execute(stored):
        leads[unit_id].add(lead_pk)
        events[unit_id] += 1
    return [(unit_id, len(pks), events[unit_id]) for unit_id, pks in leads.items()]


def _due_rules():
    """Each due lead with each decay rule of its OU: the rule's period and the moment it applies from, in us."""
    r = DecayRule
    return (
        select(
            *DUE.c,
            r.id.label("rule_id"),
            r.inactive_for,
            r.unit,
            r.decrease,
            period_us(r).label("p_us"),
            epoch_us(r.applies_from).label("from_us"),
        )
        .join_from(DUE, r, r.unit_id == DUE.c.unit_id)
        .subquery("due_rules")
    )


def _store_periods(now: datetime, now_us: int):
    """INSERT ... SELECT of every (rule, due lead, period k) ending after what was applied (and after the rule's
    applies_from) and by now; k counts periods from the lead's last activity.

    A lead whose bookkeeping counts from its last activity has every period up to `checked` stored and none after
    (both are written in one transaction, under the lead's row lock). Any other (no bookkeeping yet, or it counted from
    another activity: the last event was deleted, a lead was merged in) may already hold some of these periods, so
    each is looked up among its events by (lead_pk, occurred_at), the index scoring reads a lead's events by.
    """
    d = _due_rules()
    lower_us = _greater(d.c.from_us, func.coalesce(d.c.checked_us, 0))
    k_lo = case((lower_us < d.c.anchor_us, 1), else_=(lower_us - d.c.anchor_us) // d.c.p_us + 1)
    k_hi = case((now_us < d.c.anchor_us, 0), else_=(now_us - d.c.anchor_us) // d.c.p_us)
    columns = (
        *("pk", "org_id", "unit_id", "anchor", "anchor_us", "checked_us"),
        *("rule_id", "inactive_for", "unit", "decrease", "p_us"),
    )
    base = select(*(d.c[c] for c in columns), k_lo.label("k"), k_hi.label("k_hi")).where(k_lo <= k_hi)
    periods = base.cte("decay_periods", recursive=True)
    p = periods.c
    periods = periods.union_all(select(*(p[c] for c in columns), p.k + 1, p.k_hi).where(p.k < p.k_hi))
    p = periods.c
    metadata = json_object(
        *(
            item
            for name, value in (
                ("channel", _text("system")),
                ("decay_id", p.rule_id),
                ("period", p.k),
                ("decrease", p.decrease),
                ("inactive_for", p.inactive_for),
                ("unit", p.unit),
                ("since", rfc3339_text(p.anchor)),
            )
            for item in (_text(name), value)
        )
    )
    at = from_epoch_us(p.anchor_us + p.k * p.p_us)
    e = STORED.c
    stored = (
        select(literal_column("1"))
        .where(
            e.lead_pk == p.pk,
            e.occurred_at == at,
            e.event_type == DECAY,
            # the rule, the period's number and length: with the time, the activity it counts from
            e.metadata["decay_id"].as_string() == p.rule_id,
            e.metadata["period"].as_integer() == p.k,
            e.metadata["inactive_for"].as_integer() == p.inactive_for,
            e.metadata["unit"].as_string() == p.unit,
        )
        .exists()
    )
    rows = select(
        p.org_id,
        p.unit_id,
        p.pk,
        _text(DECAY),
        at,
        literal(now, UTCDateTime()),
        metadata,
        literal_column(str(PENDING)),
        true(),  # quiet: a fall never alerts, and its level changes need no examining
    ).where(or_(p.checked_us.isnot(None), ~stored))
    return (
        insert(EVENTS)
        .from_select([*(EVENTS.c[c] for c in INSERTED), EVENTS.c.status, EVENTS.c.quiet], rows)
        .returning(EVENTS.c.unit_id, EVENTS.c.lead_pk)
    )


def _schedule_next(now: datetime, now_us: int, after: int, last: int):
    """Each due lead: counted from its anchor, applied through now, its next period's end over the OU's rules.

    The leads stay locked from their reading to the commit, so their last activity is still the one read. A concurrent
    pass that got further keeps its later mark. The chunk's pk range lets the planner reach the rows by their primary
    key: joined on pk alone, it read the whole table once per chunk.
    """
    d = _due_rules()
    ref_us = _greater(literal(now_us, BigInteger), d.c.from_us)
    done = case((ref_us < d.c.anchor_us, 0), else_=(ref_us - d.c.anchor_us) // d.c.p_us)
    upcoming = (
        select(d.c.pk, d.c.anchor, func.min(d.c.anchor_us + d.c.p_us * (done + 1)).label("next_us"))
        .group_by(d.c.pk, d.c.anchor)
        .subquery("next_due")
    )
    now_value = literal(now, UTCDateTime())
    book = LeadDecay
    return (
        update(book)
        .where(book.lead_pk == upcoming.c.pk, book.lead_pk > after, book.lead_pk <= last)
        .values(
            anchor_at=upcoming.c.anchor,
            checked_at=case(
                (and_(book.anchor_at == upcoming.c.anchor, book.checked_at > now_value), book.checked_at),
                else_=now_value,
            ),
            next_at=from_epoch_us(upcoming.c.next_us),
        )
        .execution_options(synchronize_session=False)
    )


def reschedule_unit(session: Session, unit_id: str) -> None:
    """After a decay rule of the OU is added or changed: every lead's next period is looked for again."""
    session.execute(
        update(LeadDecay)
        .where(LeadDecay.unit_id == unit_id, LeadDecay.next_at.isnot(None))
        .values(next_at=None)
        .execution_options(synchronize_session=False)
    )


def look_again(session: Session, leads: dict[int, tuple[str, bool]]) -> None:
    """Scoring changed these leads' last activity ({pk: (unit_id, first)}; first: the lead had none, or was replayed):
    the next pass counts their periods again, from it. Called with the leads locked, as the pass locks them."""
    first = [{"lead_pk": pk, "unit_id": unit} for pk, (unit, new) in sorted(leads.items()) if new]
    others = sorted(pk for pk, (_, new) in leads.items() if not new)
    if first:
        stmt = insert_for(session, LeadDecay.__table__)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["lead_pk"], set_={"next_at": None}, where=LeadDecay.next_at.isnot(None)
            ),
            first,
        )
    if others:  # a row each has since its first activity; one already looking costs no write
        session.execute(
            update(LeadDecay)
            .where(LeadDecay.lead_pk.in_(others), LeadDecay.next_at.isnot(None))
            .values(next_at=None)
            .execution_options(synchronize_session=False)
        )
