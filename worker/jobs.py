"""RQ jobs: thin wrappers that take plain values and call the model layer."""
from __future__ import annotations

import logging
import time

from rq import get_current_job
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from config import Settings
from models.db import session_factory
from models.score_batch import has_pending, score_pending
from worker.stream import announce_scores
from integrations.timeouts import timed_out
from worker.wakeup import (ALERTS_TIMEOUT, FLAG_TTL, HUBSPOT_SYNC_TIMEOUT, METRICS_KEY, alerts_kick_key, enqueue_alerts,
                           enqueue_hubspot_sync, flag_key, hubspot_kick_key, kick_alerts, kick_hubspot_sync, kick_scoring,
                           record_latencies, urgent_queue, wait_key)

log = logging.getLogger("leadpulse.jobs")

MAX_RUN_SECONDS = 60  # then hand over to a fresh job so one slot never pins a worker
RETRIES = 5


def _score_once(Session, slot: int, slots: int, limit: int):
    """One batch in one transaction; deadlock or serialization failures are retried, not lost."""
    for attempt in range(RETRIES):
        try:
            with Session() as s, s.begin():
                return score_pending(s, slot=slot, slots=slots, limit=limit)
        except OperationalError as exc:
            if attempt == RETRIES - 1 or timed_out(exc):  # the job's time is up: end it, do not retry
                raise
            log.warning("scoring batch retry %d after %s", attempt + 1, exc.orig.__class__.__name__)
            time.sleep(0.05 * (attempt + 1))


def score_slot(slot: int, slots: int) -> int:
    """Score pending events of one lead partition until none are left; returns events scored."""
    settings = Settings.from_env()
    Session = session_factory(settings.database_url, writer=True)
    redis = get_current_job().connection
    key = flag_key(slot)
    deadline = time.monotonic() + MAX_RUN_SECONDS
    total = 0
    while True:
        result = _score_once(Session, slot, slots, settings.score_batch_size)
        total += result.events
        pipe = redis.pipeline(transaction=False)
        pipe.expire(key, FLAG_TTL)
        if result.events:
            count_batch(pipe, result)
        pipe.execute()
        for unit_id in hubspot_units(Session, settings, result.changed_units):
            kick_hubspot_sync(redis, settings.queue_name, unit_id)
        for unit_id in result.level_units:
            kick_alerts(redis, settings.queue_name, unit_id)
        if result.updates:
            announce_scores(redis, result.updates)
        if result.events and redis.llen(f"rq:queue:{urgent_queue(settings.queue_name)}"):
            # An alert waits: give this worker to it (workers take the urgent queue first) and queue the slot again.
            redis.delete(key)
            kick_scoring(redis, settings.queue_name, slots, only=[slot])
            break
        if result.events == 0:
            # Release, then look again: an event committed before the release is seen here,
            # one committed after it finds the flag free and enqueues a new job.
            redis.delete(key)
            with Session() as s:
                if not has_pending(s, slot, slots):
                    break
            if not redis.set(key, 1, nx=True, ex=FLAG_TTL):
                break
        elif time.monotonic() > deadline:
            redis.delete(key)
            kick_scoring(redis, settings.queue_name, slots, only=[slot])
            break
    log.info("slot %d/%d scored %d events", slot, slots, total)
    return total


def sync_hubspot_options(unit_id: str) -> bool:
    """Keep engagement_level's options equal to the OU's level table (RQ retries with backoff on failure)."""
    from integrations.hubspot_sync import sync_level_options
    from models.accounts import load_or_create_secret

    settings = Settings.from_env()
    Session = session_factory(settings.database_url)
    return sync_level_options(Session, settings, load_or_create_secret(Session), unit_id, get_current_job().connection)


def hubspot_units(Session, settings, units: set[str]) -> set[str]:
    """The changed OUs HubSpot serves: not a job per batch for OUs that never connected."""
    if not units or settings.hubspot_access_token:
        return units
    from models.integrations import HubSpotConnection

    with Session() as s:
        return set(s.execute(select(HubSpotConnection.unit_id).where(HubSpotConnection.unit_id.in_(units))).scalars())


def run_unit_job(kind: str, unit_id: str, retry: bool, kick_key: str, timeout: int, work, more_work, enqueue, meanwhile=None):
    """One job per OU at a time (HubSpot sync, Slack delivery): a rate limit or a backoff reschedules it (retry=True)
    and, until then, other runs only do `meanwhile` (no call out); work committed while it held the lock makes it
    look again. None: it did not run."""
    redis = get_current_job().connection
    redis.delete(kick_key)  # changes committed from now on enqueue a new job
    if retry:
        redis.delete(wait_key(kind, unit_id))
    elif redis.exists(wait_key(kind, unit_id)):
        if meanwhile is not None:
            meanwhile()
        return None  # the retry scheduled for the end of the wait does the rest
    lock = f"leadpulse:{kind}:run:{unit_id}"
    if not redis.set(lock, 1, nx=True, ex=timeout + 30):  # outlives the job's timeout, not much longer
        return None  # another worker is at it; it looks again before it stops
    try:
        out = work(redis)
    finally:
        redis.delete(lock)
    if out.retry_in:
        redis.set(wait_key(kind, unit_id), 1, px=max(1, int(out.retry_in * 1000)))
        enqueue(redis, unit_id, out.retry_in)
    elif out.retry_in is not None or (out.stopped is None and more_work()):
        enqueue(redis, unit_id, 0)
    return out


def sync_hubspot_contacts(unit_id: str, retry: bool = False) -> int:
    """Write changed leads to HubSpot; reschedules itself on rate limits and 5xx instead of sleeping."""
    from integrations.hubspot_sync import sync_contacts
    from models.accounts import load_or_create_secret
    from models.integrations import pending_contacts

    settings = Settings.from_env()
    Session = session_factory(settings.database_url)

    def more_work():
        with Session() as s:
            return bool(pending_contacts(s, unit_id, 1))

    out = run_unit_job("hubspot", unit_id, retry, hubspot_kick_key(unit_id), HUBSPOT_SYNC_TIMEOUT,
                       lambda redis: sync_contacts(Session, settings, load_or_create_secret(Session), redis, unit_id), more_work,
                       lambda redis, unit, delay: enqueue_hubspot_sync(redis, settings.queue_name, unit, delay=delay))
    if out is None:
        return 0
    log.info("HubSpot sync of %s: %d sent, %d failed, retry in %s, stopped: %s", unit_id, out.sent, out.failed,
             out.retry_in, out.stopped)
    return out.sent


def deliver_slack_alerts(unit_id: str, retry: bool = False) -> int:
    """Post the OU's pending alerts; reschedules itself on rate limits and outages instead of sleeping."""
    from integrations.slack_alerts import deliver_alerts, examine_all
    from models.accounts import load_or_create_secret
    from models.alerts import has_alert_work

    settings = Settings.from_env()
    Session = session_factory(settings.database_url, writer=True)  # SQLite: examine reads then writes

    def more_work():
        with Session() as s:
            return has_alert_work(s, unit_id)

    out = run_unit_job("slack", unit_id, retry, alerts_kick_key(unit_id), ALERTS_TIMEOUT,
                       lambda redis: deliver_alerts(Session, settings, load_or_create_secret(Session), unit_id, redis), more_work,
                       lambda redis, unit, delay: enqueue_alerts(redis, settings.queue_name, unit, delay=delay),
                       meanwhile=lambda: examine_all(Session, unit_id))  # alerts are decided on time, posted after the wait
    if out is None:
        return 0
    record_latencies(get_current_job().connection, list(out.latencies))
    log.info("Slack alerts of %s: %d sent, retry in %s, stopped: %s", unit_id, out.sent, out.retry_in, out.stopped)
    return out.sent


def delete_lead(deletion_id: int) -> bool:
    """Remove a lead and everything hanging off it (retried by RQ on failure)."""
    from models.lead_delete import run_deletion

    return run_deletion(session_factory(Settings.from_env().database_url, writer=True), deletion_id)


def lead_deletion_failed(job, connection, exc_type, exc_value, tb):
    """Out of retries: the receipt says failed with the reason, so GET /lead/{id}/deletion-status tells the truth."""
    from models.lead_delete import mark_failed

    if job.retries_left:
        return
    Session = session_factory(Settings.from_env().database_url, writer=True)
    with Session() as s, s.begin():
        mark_failed(s, job.args[0], f"{exc_type.__name__}: {exc_value}")


def count_batch(pipe, result) -> None:
    """Scoring counters live in Redis so /metrics on any web process reports every worker's work."""
    pipe.hincrby(METRICS_KEY, "events_scored", result.events)
    pipe.hincrby(METRICS_KEY, "scoring_batches", 1)
    pipe.hincrby(METRICS_KEY, "level_changes", result.level_changes)
    pipe.hincrby(METRICS_KEY, "replays", result.replays)


def release_slot_on_failure(job, connection, exc_type, exc_value, tb):
    """A failed scoring job frees its slot at once so the next ingest or sweep can retry."""
    slot = job.args[0] if job.args else 0
    connection.delete(flag_key(slot))
    log.error("scoring slot %s failed: %s", slot, exc_value)
