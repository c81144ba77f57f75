"""What must hold after the faults, read from PostgreSQL and the fakes against what the client recorded: every accepted
event stored once and scored once, every score the sum of its events' weights, one Slack message per Hot entry."""

from __future__ import annotations

import collections
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from integrations.slack import METADATA_EVENT
from models.base import utcnow
from models.events import PENDING, SCORED, Event, ScoreDelta
from models.leads import Lead, LeadAlias
from models.levels import EngagementLevel, LeadLevelChange
from models.locks import UNIT_LOCK_SPACE
from models.scoring import LeadScore, Ruleset
from models.slack import PENDING as ALERT_PENDING
from models.slack import SENT, SlackAlert
from tests.fakes import FakeHubSpot, FakeSlack
from tests.faults.load import HOT, WEIGHTS, Sent, expected_scores


class Store:
    """Reads of the private database for the checks and the recovery clocks. No pool: a crashed server leaves no
    dead connection behind, and a poll during an outage is simply "not yet"."""

    def __init__(self, url: str, unit_id: str) -> None:
        self.engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": 5})
        self.unit_id = unit_id

    def close(self) -> None:
        self.engine.dispose()

    def rows(self, stmt) -> list:
        with self.engine.connect() as conn:
            return conn.execute(stmt).all()

    def scalar(self, stmt):
        with self.engine.connect() as conn:
            return conn.execute(stmt).scalar()

    def reachable_rows(self, stmt) -> list | None:
        """None while the database is down (a fault in progress), instead of an error."""
        try:
            return self.rows(stmt)
        except OperationalError:
            return None

    # progress
    def slots(self, slots: int, since: datetime) -> dict[int, tuple[int, datetime | None]] | None:
        """Per scoring slot (lead_pk % slots, as models/score_batch.py splits them): pending events, and the first
        scoring after `since`."""
        slot = (Event.lead_pk % slots).label("slot")
        rows = self.reachable_rows(
            select(
                slot,
                func.count().filter(Event.status == PENDING),
                func.min(Event.scored_at).filter(Event.scored_at > since),
            )
            .where(Event.unit_id == self.unit_id)
            .group_by(slot)
        )
        return None if rows is None else {r[0]: (r[1], r[2]) for r in rows}

    def first_alert_sent_after(self, since: datetime) -> datetime | None:
        rows = self.reachable_rows(
            select(func.min(SlackAlert.sent_at)).where(SlackAlert.unit_id == self.unit_id, SlackAlert.sent_at > since)
        )
        return rows[0][0] if rows else None

    def outstanding(self) -> dict[str, int] | None:
        """Work the workers still owe: pending events, unexamined entries into the alert level, unsent alerts.
        (Other level changes wait for the sweep to be examined, in no hurry, and owe nothing.)"""
        hot = select(EngagementLevel.id).where(
            EngagementLevel.unit_id == self.unit_id, EngagementLevel.min_score >= HOT
        )
        rows = self.reachable_rows(
            select(
                select(func.count())
                .select_from(Event)
                .where(Event.unit_id == self.unit_id, Event.status == PENDING)
                .scalar_subquery(),
                select(func.count())
                .select_from(LeadLevelChange)
                .where(
                    LeadLevelChange.unit_id == self.unit_id,
                    LeadLevelChange.alert_checked.is_(False),
                    LeadLevelChange.to_level_id.in_(hot),
                    LeadLevelChange.from_level_id.is_(None) | LeadLevelChange.from_level_id.not_in(hot),
                )
                .scalar_subquery(),
                select(func.count())
                .select_from(SlackAlert)
                .where(SlackAlert.unit_id == self.unit_id, SlackAlert.status == ALERT_PENDING)
                .scalar_subquery(),
            )
        )
        if rows is None:
            return None
        pending, unexamined, unsent = rows[0]
        return {"pending events": pending, "unexamined Hot entries": unexamined, "unsent alerts": unsent}

    @contextlib.contextmanager
    def batch_watch(self) -> Iterator[Callable[[], list[Batch]]]:
        """Worker connections in the middle of a scoring batch, polled over one connection (a new one per poll would
        cost the server a fork each): a transaction holding the shared OU lock a batch takes first and keeps until it
        commits (models/locks.py). A worker's connections name its process (`leadpulse-worker:<pid>`, models/db.py)."""
        stmt = text(
            "SELECT DISTINCT a.application_name, a.pid, a.xact_start, a.state FROM pg_stat_activity a "
            "JOIN pg_locks l ON l.pid = a.pid WHERE a.application_name LIKE :workers AND l.granted "
            "AND l.locktype = 'advisory' AND l.classid = :space AND l.mode = 'ShareLock'"
        ).bindparams(workers="leadpulse-worker:%", space=UNIT_LOCK_SPACE)
        # Autocommit: pg_stat_activity is read once per transaction and kept for the rest of it.
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:

            def batches() -> list[Batch]:
                return [
                    Batch(int(n.rsplit(":", 1)[1]), pid, start, state) for n, pid, start, state in conn.execute(stmt)
                ]

            yield batches


@dataclass(frozen=True)
class Batch:
    """A scoring batch in progress, as PostgreSQL sees it."""

    worker_pid: int  # the `leadpulse worker` process
    backend_pid: int  # its connection's server process
    xact_start: datetime  # the batch's transaction: the same value means the same batch
    state: str  # "active" (running a statement) or "idle in transaction" (waiting for the worker)


def message_keys(slack: FakeSlack) -> list[str | None]:
    """The alert key each message in the fake channel carries (None: a message LeadPulse did not key)."""
    with slack.lock:
        messages = list(slack.messages)
    keys = []
    for m in messages:
        meta = m.get("metadata") or {}
        keys.append((meta.get("event_payload") or {}).get("key") if meta.get("event_type") == METADATA_EVENT else None)
    return keys


@dataclass
class Outcome:
    """What the client was told, turned into what the database must say."""

    sent: list[Sent]
    accepted: dict[str, Sent]

    @property
    def scores(self) -> dict[str, int]:
        return expected_scores(self.accepted.values())

    @property
    def hot(self) -> set[str]:
        return {email for email, score in self.scores.items() if score >= HOT}


def hubspot_lagging(hubspot: FakeHubSpot, scores: dict[str, int]) -> list[str]:
    """Contacts whose engagement_score is not their lead's score yet."""
    lagging = []
    for email, score in sorted(scores.items()):
        contact = hubspot.contact_by_email(email) or {}
        if contact.get("properties", {}).get("engagement_score") != str(score):
            lagging.append(f"{email}: {contact.get('properties', {}).get('engagement_score')} != {score}")
    return lagging


def settle(store: Store, slack: FakeSlack, hubspot: FakeHubSpot, outcome: Outcome, timeout: float) -> float:
    """Wait until the workers owe nothing (scores, alerts, HubSpot); returns how long it took."""
    started, state = time.monotonic(), {}
    deadline = started + timeout
    while time.monotonic() < deadline:
        owed = store.outstanding()
        state = {
            "database": owed or "unreachable",
            "slack messages": len(slack.messages),
            "hot leads": len(outcome.hot),
        }
        if owed is not None and not any(owed.values()) and len(slack.messages) >= len(outcome.hot):
            lagging = hubspot_lagging(hubspot, outcome.scores)
            state["hubspot lagging"] = len(lagging)
            if not lagging:
                return time.monotonic() - started
        time.sleep(0.2)  # polling the database for a condition; nothing to be woken by
    with slack.lock:
        recent = [(r.path.rsplit("/", 1)[-1], r.status, round(time.time() - r.at, 1)) for r in slack.requests[-8:]]
    raise AssertionError(
        f"the workers did not settle within {timeout:.0f} s: {state}\nSlack's last requests (method, status, "
        f"seconds ago): {recent}\n" + "\n".join(verify(store, slack, outcome))
    )


def verify(store: Store, slack: FakeSlack, outcome: Outcome) -> list[str]:
    """Every problem found; empty when exactly-once held."""
    problems: list[str] = []
    unit = store.unit_id
    emails = dict(
        store.rows(
            select(LeadAlias.lead_pk, LeadAlias.value).where(LeadAlias.unit_id == unit, LeadAlias.kind == "email")
        )
    )
    events = store.rows(
        select(Event.id, Event.idempotency_key, Event.lead_pk, Event.event_type, Event.status).where(
            Event.unit_id == unit
        )
    )
    planned = {e.event_id: e for e in outcome.sent}

    # Stored exactly once, on the right lead.
    stored = collections.Counter(e.idempotency_key for e in events)
    twice = sorted(k for k, n in stored.items() if n > 1)
    lost = sorted(set(outcome.accepted) - set(stored))
    unknown = sorted(k for k in stored if k not in planned)
    if twice:
        problems.append(f"{len(twice)} events stored more than once, e.g. {twice[:5]}")
    if lost:
        problems.append(f"{len(lost)} accepted events lost, e.g. {lost[:5]}")
    if unknown:
        problems.append(f"{len(unknown)} stored events nobody sent, e.g. {unknown[:5]}")
    misfiled = [
        e.idempotency_key
        for e in events
        if e.idempotency_key in planned and emails.get(e.lead_pk) != planned[e.idempotency_key].email
    ]
    if misfiled:
        problems.append(f"{len(misfiled)} events on another lead than their alias's, e.g. {misfiled[:5]}")
    by_email = collections.Counter(emails.values())
    split = sorted(email for email, n in by_email.items() if n > 1)
    if split:
        problems.append(f"{len(split)} emails with more than one lead, e.g. {split[:5]}")

    # Scored exactly once: every event scored, one delta of its rule's weight in the primary ruleset.
    unscored = [e.idempotency_key for e in events if e.status != SCORED]
    if unscored:
        problems.append(f"{len(unscored)} events not scored, e.g. {unscored[:5]}")
    primary = store.scalar(select(Ruleset.id).where(Ruleset.unit_id == unit, Ruleset.is_primary.is_(True)))
    deltas = collections.defaultdict(list)
    for event_id, delta in store.rows(
        select(ScoreDelta.event_id, ScoreDelta.delta).where(ScoreDelta.ruleset_id == primary)
    ):
        deltas[event_id].append(delta)
    wrong = [e.idempotency_key for e in events if deltas.get(e.id) != [WEIGHTS[e.event_type]]]
    if wrong:
        problems.append(f"{len(wrong)} events without exactly one delta of their weight, e.g. {wrong[:5]}")

    # Each lead's score is the sum of its events' weights, in every place it is kept, and its level follows.
    levels = store.rows(
        select(EngagementLevel.id, EngagementLevel.name, EngagementLevel.min_score, EngagementLevel.max_score).where(
            EngagementLevel.unit_id == unit
        )
    )

    def level_of(score: int) -> str | None:
        return next(
            (lv.id for lv in levels if lv.min_score <= score and (lv.max_score is None or score <= lv.max_score)), None
        )

    kept = {
        pk: score
        for pk, score in store.rows(select(LeadScore.lead_pk, LeadScore.score).where(LeadScore.ruleset_id == primary))
    }
    summed = collections.Counter()
    for event_id, lead_pk in ((e.id, e.lead_pk) for e in events):
        summed[lead_pk] += sum(deltas.get(event_id, []))
    scores = outcome.scores
    off = []
    for lead in store.rows(select(Lead.pk, Lead.score, Lead.level_id).where(Lead.unit_id == unit)):
        want = scores.get(emails.get(lead.pk), 0)
        if (lead.score, kept.get(lead.pk, 0), summed[lead.pk], lead.level_id) != (want, want, want, level_of(want)):
            off.append(
                f"{emails.get(lead.pk)}: score {lead.score}, lead_scores {kept.get(lead.pk)}, deltas {summed[lead.pk]}, want {want}"
            )
    if off:
        problems.append(f"{len(off)} leads scored wrong, e.g. {off[:5]}")

    # One level entry, one alert row, one Slack message per lead that reached Hot; none for the others.
    hot_ids = {lv.id for lv in levels if lv.min_score >= HOT}
    entries = collections.Counter(
        emails.get(pk)
        for pk, to_level, from_level in store.rows(
            select(LeadLevelChange.lead_pk, LeadLevelChange.to_level_id, LeadLevelChange.from_level_id).where(
                LeadLevelChange.unit_id == unit
            )
        )
        if to_level in hot_ids and from_level not in hot_ids
    )
    if set(entries) != outcome.hot or any(n != 1 for n in entries.values()):
        problems.append(
            f"Hot entries recorded {dict(entries) if len(entries) < 10 else len(entries)} for {len(outcome.hot)} leads that reached Hot"
        )
    alerts = store.rows(
        select(SlackAlert.key, SlackAlert.kind, SlackAlert.lead_pk, SlackAlert.status).where(SlackAlert.unit_id == unit)
    )
    alerted = collections.Counter(emails.get(a.lead_pk) for a in alerts)
    if set(alerted) != outcome.hot or any(n != 1 for n in alerted.values()) or any(a.kind != "lead" for a in alerts):
        problems.append(
            f"{len(alerts)} alert rows for {len(outcome.hot)} leads that reached Hot: {collections.Counter((a.kind, a.status) for a in alerts)}"
        )
    unsent = [a.key for a in alerts if a.status != SENT]
    if unsent:
        problems.append(f"{len(unsent)} alerts not sent, e.g. {unsent[:5]}")
    posted = collections.Counter(message_keys(slack))
    repeated = sorted(k for k, n in posted.items() if n > 1)
    if repeated:
        problems.append(
            f"{len(repeated)} alerts posted to Slack more than once, e.g. {[(k, posted[k]) for k in repeated[:5]]}"
        )
    missing = sorted({a.key for a in alerts} - set(posted))
    if missing:
        problems.append(f"{len(missing)} alerts never reached Slack, e.g. {missing[:5]}")
    stray = sorted(str(k) for k in set(posted) - {a.key for a in alerts})
    if stray:
        problems.append(f"{len(stray)} Slack messages that are no alert, e.g. {stray[:5]}")
    return problems


def now() -> datetime:
    """The clock the workers stamp scored_at and sent_at with (the same machine's)."""
    return utcnow()
