"""Turning recorded level changes into Slack alert rows: one per entry, cooldown per lead, digests for reconfiguration."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.dialect import insert_for
from models.events import Event
from models.leads import Lead
from models.levels import EngagementLevel, LeadLevelChange
from models.locks import ALERT_LOCK_SPACE, lock_unit
from models.slack import PENDING, SUMMARIZED, SUPPRESSED, UNSENT, AlertSettings, SlackAlert
from models.unit_context import DEFAULT_ALERT_LEVEL

DEFAULT_COOLDOWN_HOURS = 24
EXAMINE_LIMIT = 5000
DIGEST_SAMPLE = 10
CATCH_UP_FLOOR_HOURS = 1  # with a short (or zero) cooldown, an alert waits this long before it counts as stale


@dataclass
class AlertConfig:
    level: EngagementLevel | None  # entries into this level or above alert
    is_default: bool
    cooldown_hours: int
    digest: bool


def default_level(session: Session, unit_id: str) -> EngagementLevel | None:
    return session.execute(
        select(EngagementLevel).where(
            EngagementLevel.unit_id == unit_id, func.lower(EngagementLevel.name) == DEFAULT_ALERT_LEVEL.lower()
        )
    ).scalar()


def alert_config(session: Session, unit_id: str) -> AlertConfig:
    """Stored settings, with the documented defaults (the level named Hot, 24 h cooldown, digest on) where nothing is stored (or the chosen level is gone)."""
    row = session.get(AlertSettings, unit_id)
    chosen = session.get(EngagementLevel, row.alert_min_level_id) if row and row.alert_min_level_id else None
    return AlertConfig(
        level=chosen or default_level(session, unit_id),
        is_default=chosen is None,
        cooldown_hours=row.cooldown_hours if row else DEFAULT_COOLDOWN_HOURS,
        digest=row.digest_on_reclassification if row else True,
    )


def examine_changes(session: Session, unit_id: str, now: datetime | None = None) -> int:
    """Read up to EXAMINE_LIMIT unexamined level changes of the OU and write the alert rows they call for; returns changes read.

    Idempotent and serialized per OU (an advisory lock): changes are marked examined in the same transaction,
    and every alert row has a unique key per level entry (a digest: per reconfiguration, its count merged).
    """
    now = now or utcnow()
    lock_unit(
        session, unit_id, space=ALERT_LOCK_SPACE
    )  # the cooldown reads the last alert a concurrent examiner may write
    changes = (
        session.execute(
            select(LeadLevelChange)
            .where(LeadLevelChange.unit_id == unit_id, LeadLevelChange.alert_checked.is_(False))
            .order_by(LeadLevelChange.id)
            .limit(EXAMINE_LIMIT)
            .with_for_update()
        )
        .scalars()
        .all()
    )
    if not changes:
        return 0
    cfg = alert_config(session, unit_id)
    rows: list[dict] = []
    if cfg.level is not None:
        mins = dict(
            session.execute(
                select(EngagementLevel.id, EngagementLevel.min_score).where(EngagementLevel.unit_id == unit_id)
            ).all()
        )
        bar = cfg.level.min_score

        def entered(c: LeadLevelChange) -> bool:
            return mins.get(c.to_level_id, bar - 1) >= bar and mins.get(c.from_level_id, bar - 1) < bar

        entries = [c for c in changes if entered(c)]
        rows += _lead_alerts(session, unit_id, [c for c in entries if c.cause != "reconfiguration"], cfg, now)
        if cfg.digest:
            rows += _digests(session, unit_id, [c for c in entries if c.cause == "reconfiguration"], cfg, now)
    if rows:
        session.execute(insert_for(session, SlackAlert).on_conflict_do_nothing(index_elements=["key"]), rows)
    session.execute(
        update(LeadLevelChange).where(LeadLevelChange.id.in_([c.id for c in changes])).values(alert_checked=True)
    )
    return len(changes)


def _lead_alerts(
    session: Session, unit_id: str, entries: list[LeadLevelChange], cfg: AlertConfig, now: datetime
) -> list[dict]:
    """One row per entry; an entry within the cooldown of the lead's last alert is recorded as suppressed."""
    if not entries:
        return []
    pks = list({c.lead_pk for c in entries})
    last_alert = dict(
        session.execute(
            select(SlackAlert.lead_pk, func.max(SlackAlert.created_at))
            .where(SlackAlert.lead_pk.in_(pks), SlackAlert.kind == "lead", SlackAlert.status != SUPPRESSED)
            .group_by(SlackAlert.lead_pk)
        ).all()
    )
    received = {
        (pk, at): first
        for pk, at, first in session.execute(  # the events scored in the batch that made the change
            select(Event.lead_pk, Event.scored_at, func.max(Event.received_at))
            .where(Event.lead_pk.in_(pks), Event.scored_at.in_({c.changed_at for c in entries}))
            .group_by(Event.lead_pk, Event.scored_at)
        )
    }
    cooldown = timedelta(hours=cfg.cooldown_hours)
    rows = []
    for c in entries:
        previous = last_alert.get(c.lead_pk)
        suppressed = previous is not None and c.changed_at - previous < cooldown
        if not suppressed:
            last_alert[c.lead_pk] = c.changed_at
        rows.append(
            dict(
                unit_id=unit_id,
                key=f"change:{c.id}",
                kind="lead",
                lead_pk=c.lead_pk,
                level_id=c.to_level_id,
                score=c.score,
                payload={"from_level_id": c.from_level_id, "changed_at": c.changed_at.isoformat()},
                status=SUPPRESSED if suppressed else PENDING,
                attempts=0,
                last_error="within the cooldown of this lead's last alert" if suppressed else None,
                event_received_at=received.get((c.lead_pk, c.changed_at)),
                created_at=c.changed_at,
            )
        )
    return rows


def _digests(
    session: Session, unit_id: str, entries: list[LeadLevelChange], cfg: AlertConfig, now: datetime
) -> list[dict]:
    """One message per reconfiguration (its changes share one timestamp), not one per lead.

    A reconfiguration records its moves per (from level, to level), each with the leads' score range and count; a
    row examined in an earlier round adds to the pending digest of that reconfiguration, and delivery only starts
    once every round is done.
    """
    by_time: dict[datetime, list[LeadLevelChange]] = defaultdict(list)
    for c in entries:
        by_time[c.changed_at].append(c)
    rows = []
    for changed_at, group in sorted(by_time.items()):
        key = f"digest:{unit_id}:{changed_at.isoformat()}"
        sample = _top_entered(session, unit_id, group)
        count = sum(c.leads for c in group)
        existing = session.execute(
            select(SlackAlert).where(SlackAlert.key == key, SlackAlert.status == PENDING)
        ).scalar()
        if existing is not None:
            payload = dict(existing.payload)
            payload["count"] += count
            payload["leads"] = (payload["leads"] + sample)[:DIGEST_SAMPLE]
            existing.payload = payload
            continue
        rows.append(
            dict(
                unit_id=unit_id,
                key=key,
                kind="digest",
                lead_pk=None,
                level_id=cfg.level.id,
                score=None,
                status=PENDING,
                attempts=0,
                created_at=changed_at,
                last_error=None,
                event_received_at=None,
                payload={"reason": "reconfiguration", "count": count, "level": cfg.level.name, "leads": sample},
            )
        )
    return rows


def _top_entered(session: Session, unit_id: str, group: list[LeadLevelChange]) -> list[str]:
    """The highest-scoring leads among those the moves brought in: the leads of each move's level whose score lies in
    its range (a row naming one lead: that lead), best first, through the (unit, score) index."""
    which = [
        Lead.pk == c.lead_pk
        if c.lead_pk is not None
        else and_(Lead.level_id == c.to_level_id, Lead.score.between(c.score, c.max_score))
        for c in group
    ]
    return list(
        session.execute(
            select(Lead.lead_id)
            .where(Lead.unit_id == unit_id, Lead.merged_into.is_(None), or_(*which))
            .order_by(Lead.score.desc(), Lead.lead_id.desc())
            .limit(DIGEST_SAMPLE)
        ).scalars()
    )


def _lead_ids(session: Session, pks: list[int]) -> list[str]:
    names = dict(session.execute(select(Lead.pk, Lead.lead_id).where(Lead.pk.in_(pks))).all())
    return [names[pk] for pk in pks if pk in names]


def summarize_stale(
    session: Session, unit_id: str, cooldown_hours: int, level_name: str | None, now: datetime | None = None
) -> int:
    """Lead alerts that waited longer than the cooldown (Slack not connected or down) become one catch-up digest."""
    now = now or utcnow()
    stale = (
        session.execute(
            select(SlackAlert)
            .where(
                SlackAlert.unit_id == unit_id,
                SlackAlert.status == PENDING,
                SlackAlert.kind == "lead",
                SlackAlert.created_at < now - timedelta(hours=max(cooldown_hours, CATCH_UP_FLOOR_HOURS)),
            )
            .order_by(SlackAlert.id)
            .with_for_update(skip_locked=True)
        )
        .scalars()
        .all()
    )
    if not stale:
        return 0
    for alert in stale:
        alert.status, alert.last_error = (
            SUMMARIZED,
            "older than the cooldown when Slack became reachable: sent in a digest",
        )
    ranked = sorted(stale, key=lambda a: -(a.score or 0))[:DIGEST_SAMPLE]
    session.add(
        SlackAlert(
            unit_id=unit_id,
            key=f"catchup:{stale[0].id}-{stale[-1].id}",
            kind="digest",
            status=PENDING,
            created_at=now,
            payload={
                "reason": "catch_up",
                "count": len({a.lead_pk for a in stale}),
                "level": level_name,
                "since": min(a.created_at for a in stale).isoformat(),
                "leads": _lead_ids(session, [a.lead_pk for a in ranked]),
            },
        )
    )
    return len(stale)


def has_alert_work(session: Session, unit_id: str) -> bool:
    """Unexamined level changes or unsent alerts (pending, or posting when a job died): what delivery acts on."""
    unchecked = select(LeadLevelChange.id).where(
        LeadLevelChange.unit_id == unit_id, LeadLevelChange.alert_checked.is_(False)
    )
    pending = select(SlackAlert.id).where(SlackAlert.unit_id == unit_id, SlackAlert.status.in_(UNSENT))
    return session.execute(select(unchecked.exists().label("a"), pending.exists().label("b"))).one() != (False, False)


def units_with_alert_work(session: Session, served: set[str] | None) -> set[str]:
    """For the sweep: OUs with unexamined changes, and OUs Slack serves (`served`; None = all) with unsent alerts."""
    units = set(
        session.execute(
            select(LeadLevelChange.unit_id).where(LeadLevelChange.alert_checked.is_(False)).distinct()
        ).scalars()
    )
    pending = select(SlackAlert.unit_id).where(SlackAlert.status.in_(UNSENT)).distinct()
    units |= {u for u in session.execute(pending).scalars() if served is None or u in served}
    return units
