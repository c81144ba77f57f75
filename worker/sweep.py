"""The periodic sweep: whatever Redis lost, the database still knows; re-kick it."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import select

from config import Settings
from integrations import redis_keys as keys
from models.alerts import units_with_alert_work
from models.base import utcnow
from models.hubspot_sync_state import hubspot_served_units, stale_option_units
from models.integration_defaults import units_served_by_default
from models.leads import LeadDeletion
from models.score_batch import has_pending
from models.slack import SlackConnection
from worker.jobs import (
    enqueue_hubspot_options,
    enqueue_lead_deletion,
    kick_alerts,
    kick_audit_prune,
    kick_decay,
    kick_hubspot_sync,
    kick_scoring,
    unit_job_idle,
)

DELETION_RETRY_SECONDS = 60  # a deletion still pending after this long has lost its job
# How often the cheap part (scoring slots, alert delivery) looks: work a killed worker held is taken up again this
# long after its lease or mark lapsed (integrations/leases.py, worker/registry.py), alerts within ~11 s of a death.
# A scoring slot's key about to lapse sooner is looked at as it lapses (slot_lapse): scoring within ~8 s.
RECHECK_SECONDS = 3
LAPSE_MARGIN = 0.05  # seconds after a key's lapse that the sweep looks (Redis expires a key on access, at the ms)

log = logging.getLogger("leadpulse.sweep")


def rekick(Session, redis, queue_name: str, slots: int, settings: Settings | None = None) -> list[int]:
    """Kick scoring slots with pending events and alert delivery for OUs with alert work that no job holds or waits
    for (partial-index lookups and a few Redis reads: cheap enough for every few seconds); returns slots kicked.

    `settings` brings the environment's integration defaults (none without it)."""
    settings = settings or Settings()
    with Session() as s:
        waiting = [slot for slot in range(slots) if has_pending(s, slot, slots)]
        # OUs with a Slack row (install or target) may deliver, and those SLACK_BOT_TOKEN serves.
        slack_served = set(s.execute(select(SlackConnection.unit_id)).scalars())
        if settings.slack_bot_token:
            slack_served |= units_served_by_default(s, settings)
        alert_units = units_with_alert_work(s, slack_served)
    for unit_id in alert_units:  # a held or waiting OU is looked at again by its holder or its scheduled retry
        if unit_job_idle(redis, "slack", unit_id):
            kick_alerts(redis, queue_name, unit_id)
    return kick_scoring(redis, queue_name, slots, only=waiting) if waiting else []


def slot_lapse(redis, slots: int) -> float:
    """Seconds until the first scoring slot's key (a lease or a kick's mark) lapses, RECHECK_SECONDS if none does
    sooner. A live holder renews its key long before (its TTL stays above RECHECK_SECONDS); a dead one's runs out,
    and the sweep kicks the slot the moment it does instead of up to RECHECK_SECONDS later."""
    pipe = redis.pipeline(transaction=False)
    for slot in range(slots):
        pipe.pttl(keys.SCORE_SLOT(slot=slot))
    lapses = [ms / 1000 for ms in pipe.execute() if ms >= 0]
    return max(LAPSE_MARGIN, min([RECHECK_SECONDS, *(t + LAPSE_MARGIN for t in lapses)]))


def sweep_once(Session, redis, queue_name: str, slots: int, settings: Settings | None = None) -> list[int]:
    """Kick scoring slots with pending events, stale HubSpot options, HubSpot syncs, Slack alerts, lead deletions,
    the audit log's hourly pruning and the decay pass (every LEADPULSE_DECAY_SECONDS).

    `settings` brings the environment's integration defaults (none without it)."""
    settings = settings or Settings()
    with Session() as s:
        stale = stale_option_units(s)
        hubspot_units = hubspot_served_units(s, settings)
        deletions = (
            s.execute(
                select(LeadDeletion.id).where(
                    LeadDeletion.status == "pending",
                    LeadDeletion.requested_at < utcnow() - timedelta(seconds=DELETION_RETRY_SECONDS),
                )
            )
            .scalars()
            .all()
        )
    for unit_id in stale:
        if redis.set(keys.HUBSPOT_OPTIONS_RETRY(unit_id=unit_id), 1, nx=True, ex=keys.HUBSPOT_OPTIONS_RETRY.ttl):
            enqueue_hubspot_options(redis, queue_name, unit_id)
    for unit_id in hubspot_units:  # the job finds nothing to do quickly when all is current
        kick_hubspot_sync(redis, queue_name, unit_id)
    for deletion_id in deletions:  # a deletion whose job Redis lost; one still queued or running is left alone
        enqueue_lead_deletion(redis, queue_name, deletion_id)
    kick_audit_prune(redis, queue_name)
    kick_decay(redis, queue_name, settings.decay_seconds)
    return rekick(Session, redis, queue_name, slots, settings)


@dataclass
class Sweeper:
    """The sweep's thread: the cheap part every RECHECK_SECONDS, everything every interval and when woken."""

    stopped: threading.Event = field(default_factory=threading.Event)
    woken: threading.Event = field(default_factory=threading.Event)

    def wake(self) -> None:
        """A full sweep now: Redis came back, perhaps empty, and the database says what is left to do."""
        self.woken.set()

    def stop(self) -> None:
        self.stopped.set()
        self.woken.set()


def start_sweeper(
    Session,
    redis,
    queue_name: str,
    slots: int,
    interval: float,
    settings: Settings | None = None,
) -> Sweeper:
    """Run sweep_once now and every interval seconds (rekick in between) in a daemon thread; stop() ends it."""
    sweeper = Sweeper()

    def loop():
        next_full = 0.0
        while not sweeper.stopped.is_set():
            full = sweeper.woken.is_set() or time.monotonic() >= next_full
            sweeper.woken.clear()
            pause = RECHECK_SECONDS
            try:
                if full:
                    kicked = sweep_once(Session, redis, queue_name, slots, settings)
                    next_full = time.monotonic() + interval
                else:
                    kicked = rekick(Session, redis, queue_name, slots, settings)
                if kicked:
                    log.info("sweep re-kicked scoring slots %s", kicked)
                pause = slot_lapse(redis, slots)
            except Exception as exc:  # Redis or the database away: the next round tries again (a full one)
                log.warning("sweep failed: %s", exc)
            sweeper.woken.wait(min(interval, pause))

    threading.Thread(target=loop, name="leadpulse-sweep", daemon=True).start()
    return sweeper
