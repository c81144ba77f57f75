"""The periodic sweep: whatever Redis lost, the database still knows; re-kick it."""

from __future__ import annotations

import logging
import threading
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
    kick_hubspot_sync,
    kick_scoring,
)

DELETION_RETRY_SECONDS = 60  # a deletion still pending after this long has lost its job

log = logging.getLogger("leadpulse.sweep")


def sweep_once(Session, redis, queue_name: str, slots: int, settings: Settings | None = None) -> list[int]:
    """Kick scoring slots with pending events, stale HubSpot options, HubSpot syncs, Slack alerts, lead deletions and
    the audit log's hourly pruning.

    `settings` brings the environment's integration defaults (none without it)."""
    settings = settings or Settings()
    with Session() as s:
        waiting = [slot for slot in range(slots) if has_pending(s, slot, slots)]
        stale = stale_option_units(s)
        hubspot_units = hubspot_served_units(s, settings)
        # OUs with a Slack row (install or target) may deliver, and those SLACK_BOT_TOKEN serves.
        slack_served = set(s.execute(select(SlackConnection.unit_id)).scalars())
        if settings.slack_bot_token:
            slack_served |= units_served_by_default(s, settings)
        alert_units = units_with_alert_work(s, slack_served)
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
    for unit_id in alert_units:
        kick_alerts(redis, queue_name, unit_id)
    for deletion_id in deletions:  # a deletion whose job Redis lost; one still queued or running is left alone
        enqueue_lead_deletion(redis, queue_name, deletion_id)
    kick_audit_prune(redis, queue_name)
    return kick_scoring(redis, queue_name, slots, only=waiting) if waiting else []


def start_sweeper(
    Session,
    redis,
    queue_name: str,
    slots: int,
    interval: float,
    settings: Settings | None = None,
) -> threading.Event:
    """Run sweep_once now and every interval seconds in a daemon thread; set the event to stop it."""
    stop = threading.Event()

    def loop():
        while True:
            try:
                kicked = sweep_once(Session, redis, queue_name, slots, settings)
                if kicked:
                    log.info("sweep re-kicked scoring slots %s", kicked)
            except Exception as exc:
                log.warning("sweep failed: %s", exc)
            if stop.wait(interval):
                return

    threading.Thread(target=loop, name="leadpulse-sweep", daemon=True).start()
    return stop
