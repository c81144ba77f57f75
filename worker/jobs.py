"""Every RQ job, declared once with @job (queue, timeout, TTLs, retry, the keys it owns), and the kicks that enqueue them.

Jobs take plain values, reload what they need and call the model and integration layers; whatever Redis loses, the
sweep (worker/sweep.py) finds in the database and enqueues again.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from rq import Retry, get_current_job
from sqlalchemy.exc import OperationalError

from config import Settings
from integrations import redis_keys as keys
from integrations.hubspot_sync import sync_contacts, sync_level_options
from integrations.leases import Lease
from integrations.slack_alerts import deliver_alerts, examine_all
from integrations.timeouts import timed_out
from models.accounts import load_or_create_secret
from models.alerts import has_alert_work
from models.audit_records import prune
from models.base import utcnow
from models.db import session_factory
from models.decay_pass import DecayRun, run_decay
from models.hubspot_sync_state import hubspot_served_units, pending_contacts, pending_creations
from models.lead_delete import mark_failed, run_deletion
from models.score_batch import has_pending, score_pending
from worker.registry import QUEUED, job, mark_queued, queue_depth, urgent_queue
from worker.stream import announce_scores

log = logging.getLogger("leadpulse.jobs")

MAX_RUN_SECONDS = 60  # then hand over to a fresh job so one slot never pins a worker
RETRIES = 5
SCORING_TIMEOUT = 300
ALERTS_TIMEOUT = 300  # a delivery run hands over after 60 s
HUBSPOT_SYNC_TIMEOUT = 600
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


# Scoring ------------------------------------------------------------------------------------------------------------


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


@job(
    timeout=SCORING_TIMEOUT,
    description="score pending events, slot {0}/{1}",
    keys=(keys.SCORE_SLOT, keys.METRICS),
)
def score_slot(slot: int, slots: int) -> int:
    """Score pending events of one lead partition until none are left; returns events scored.

    The slot's key is this job's lease while it runs (a kill lets it lapse in seconds, then a kick or the sweep
    enqueues again); a job that finds the slot held does nothing, as the holder looks again before it lets go.
    """
    settings = Settings.from_env()
    Session = session_factory(settings.database_url, writer=True)
    redis = get_current_job().connection
    lease = Lease(redis, keys.SCORE_SLOT(slot=slot))
    if not lease.acquire(placeholder=QUEUED):  # a kick's mark, this job's or a later one's: the job takes it over
        return 0
    try:
        total = _score_slot(Session, settings, redis, lease, slot, slots)
    finally:
        lease.release()
    log.info("slot %d/%d scored %d events", slot, slots, total)
    return total


def _score_slot(Session, settings, redis, lease: Lease, slot: int, slots: int) -> int:
    deadline = time.monotonic() + MAX_RUN_SECONDS
    total = 0
    while lease.held:  # a lease taken over (this process stalled past its TTL) leaves the slot to its new holder
        result = _score_once(Session, slot, slots, settings.score_batch_size)
        total += result.events
        if result.events:
            pipe = redis.pipeline(transaction=False)
            count_batch(pipe, result)
            pipe.execute()
        for unit_id in hubspot_units(Session, settings, result.changed_units):
            kick_hubspot_sync(redis, settings.queue_name, unit_id)
        for unit_id in result.level_units:
            kick_alerts(redis, settings.queue_name, unit_id)
        if result.updates:
            announce_scores(redis, result.updates)
        if result.events and queue_depth(redis, urgent_queue(settings.queue_name)):
            # An alert waits: give this worker to it (workers take the urgent queue first) and queue the slot again.
            lease.release()
            kick_scoring(redis, settings.queue_name, slots, only=[slot])
            break
        if result.events == 0:
            # Release, then look again: an event committed before the release is seen here,
            # one committed after it finds the slot free and enqueues a new job.
            lease.release()
            with Session() as s:
                if not has_pending(s, slot, slots):
                    break
            if not lease.acquire(placeholder=QUEUED):
                break
        elif time.monotonic() > deadline:
            lease.release()
            kick_scoring(redis, settings.queue_name, slots, only=[slot])
            break
    return total


def kick_scoring(redis, queue_name: str, slots: int, only: list[int] | None = None) -> list[int]:
    """Enqueue a scoring job for each slot that has none running or queued; returns the slots kicked."""
    wanted = list(range(slots)) if only is None else only
    marks = [keys.SCORE_SLOT(slot=slot) for slot in wanted]
    job_ids = mark_queued(redis, score_slot.queue(redis, queue_name), marks, keys.SCORE_SLOT.ttl)
    kicked = []
    for slot, job_id in zip(wanted, job_ids, strict=True):
        if job_id is not None:
            score_slot.enqueue(redis, queue_name, slot, slots, job_id=job_id)
            kicked.append(slot)
    return kicked


def try_kick(app_state) -> None:
    """After an event is committed: wake scoring if Redis is up; the sweep covers it if not."""
    try:
        kick_scoring(app_state.redis, app_state.settings.queue_name, app_state.settings.scoring_parallelism)
    except Exception as exc:  # Redis down: the event is safe in the database
        log.warning("could not wake scoring (%s); the sweep will pick the event up", exc.__class__.__name__)


def count_batch(pipe, result) -> None:
    """Scoring counters live in Redis so /metrics on any web process reports every worker's work."""
    pipe.hincrby(keys.METRICS(), "events_scored", result.events)
    pipe.hincrby(keys.METRICS(), "scoring_batches", 1)
    pipe.hincrby(keys.METRICS(), "level_changes", result.level_changes)
    pipe.hincrby(keys.METRICS(), "replays", result.replays)


# Per-OU integration jobs: one at a time per OU and kind ------------------------------------------------------------


def run_unit_job(kind: str, unit_id: str, retry: bool, kick_key: str, work, more_work, enqueue, meanwhile=None):
    """One job per OU at a time (HubSpot sync, Slack delivery): a rate limit or a backoff reschedules it (retry=True)
    and, until then, other runs only do `meanwhile` (no call out); work committed while it held the lease makes it
    look again. work(redis, lease) asks lease.renew() before each call out and stops once it answers False (another
    job took the lease over). None: it did not run."""
    redis = get_current_job().connection
    redis.delete(kick_key)  # changes committed from now on enqueue a new job
    wait = keys.UNIT_WAIT(kind=kind, unit_id=unit_id)
    if retry:
        redis.delete(wait)
    elif redis.exists(wait):
        if meanwhile is not None:
            meanwhile()
        return None  # the retry scheduled for the end of the wait does the rest
    lease = Lease(redis, keys.UNIT_RUN(kind=kind, unit_id=unit_id))
    if not lease.acquire():
        return None  # another worker is at it; it looks again before it stops
    try:
        out = work(redis, lease)
    finally:
        lease.release()
    if out.retry_in:
        redis.set(wait, 1, px=max(1, int(out.retry_in * 1000)))
        enqueue(redis, unit_id, out.retry_in)
    elif out.retry_in is not None or (out.stopped is None and more_work()):
        enqueue(redis, unit_id, 0)
    return out


def unit_job_idle(redis, kind: str, unit_id: str) -> bool:
    """No job of this kind holds the OU's lease or waits out a limit for it: a kick is what it takes."""
    return not redis.exists(keys.UNIT_RUN(kind=kind, unit_id=unit_id), keys.UNIT_WAIT(kind=kind, unit_id=unit_id))


def _enqueue_unit_job(spec, redis, queue_name: str, unit_id: str, delay: float = 0.0) -> None:
    """A per-OU job now, or as the retry at the end of a wait (retry=True: it runs although the wait may not have
    lapsed on Redis's clock yet)."""
    if delay > 0:
        spec.enqueue(redis, queue_name, unit_id, True, delay=delay)
    else:
        spec.enqueue(redis, queue_name, unit_id)


# HubSpot ------------------------------------------------------------------------------------------------------------


@job(
    timeout=120,
    description="HubSpot engagement_level options for OU {0}",
    retry=Retry(max=5, interval=[10, 30, 60, 300, 900]),
    keys=(keys.HUBSPOT_OPTIONS_LOCK, keys.HUBSPOT_RATE, keys.HUBSPOT_PROPS),
)
def sync_hubspot_options(unit_id: str) -> bool:
    """Keep engagement_level's options equal to the OU's level table (RQ retries with backoff on failure), then write
    the contacts the change moved or renamed: after the options, so that HubSpot accepts their new values."""
    settings = Settings.from_env()
    Session = session_factory(settings.database_url)
    redis = get_current_job().connection
    current = sync_level_options(Session, settings, load_or_create_secret(Session), unit_id, redis)
    if current:
        kick_hubspot_sync(redis, settings.queue_name, unit_id)
    return current


def enqueue_hubspot_options(redis, queue_name: str, unit_id: str) -> None:
    """One idempotent job per request; level edits are rare, and the job is a no-op once current."""
    sync_hubspot_options.enqueue(redis, queue_name, unit_id)


@job(
    timeout=HUBSPOT_SYNC_TIMEOUT,
    description="HubSpot contact sync for OU {0}",
    keys=(
        keys.HUBSPOT_KICK,
        keys.UNIT_WAIT,
        keys.UNIT_RUN,
        keys.HUBSPOT_RATE,
        keys.HUBSPOT_HEALED,
        keys.HUBSPOT_PROPS,
        keys.HUBSPOT_BUDGET,
        keys.HUBSPOT_OPTIONS_LOCK,
    ),
)
def sync_hubspot_contacts(unit_id: str, retry: bool = False) -> int:
    """Write changed leads to HubSpot; reschedules itself on rate limits and 5xx instead of sleeping."""
    settings = Settings.from_env()
    Session = session_factory(settings.database_url)

    def more_work():
        with Session() as s:
            return bool(pending_contacts(s, unit_id, 1) or pending_creations(s, unit_id, 1))

    out = run_unit_job(
        "hubspot",
        unit_id,
        retry,
        keys.HUBSPOT_KICK(unit_id=unit_id),
        lambda redis, lease: sync_contacts(
            Session, settings, load_or_create_secret(Session), redis, unit_id, still_held=lease.renew
        ),
        more_work,
        lambda redis, unit, delay: enqueue_hubspot_sync(redis, settings.queue_name, unit, delay=delay),
    )
    if out is None:
        return 0
    log.info(
        "HubSpot sync of %s: %d sent, %d failed, retry in %s, stopped: %s",
        unit_id,
        out.sent,
        out.failed,
        out.retry_in,
        out.stopped,
    )
    return out.sent


def enqueue_hubspot_sync(redis, queue_name: str, unit_id: str, delay: float = 0.0) -> None:
    _enqueue_unit_job(sync_hubspot_contacts, redis, queue_name, unit_id, delay)


def kick_hubspot_sync(redis, queue_name: str, unit_id: str) -> bool:
    """Enqueue a contact sync for the OU, at most once per couple of seconds (the job coalesces the rest)."""
    if redis.exists(keys.UNIT_WAIT(kind="hubspot", unit_id=unit_id)) or not redis.set(
        keys.HUBSPOT_KICK(unit_id=unit_id), 1, nx=True, ex=keys.HUBSPOT_KICK.ttl
    ):
        return False
    enqueue_hubspot_sync(redis, queue_name, unit_id)
    return True


def hubspot_units(Session, settings, units: set[str]) -> set[str]:
    """The changed OUs HubSpot serves: not a job per batch for OUs that never connected."""
    if not units:
        return units
    with Session() as s:
        return set(hubspot_served_units(s, settings, units))


# Slack --------------------------------------------------------------------------------------------------------------


@job(
    timeout=ALERTS_TIMEOUT,
    urgent=True,
    description="Slack alerts for OU {0}",
    keys=(keys.SLACK_KICK, keys.UNIT_WAIT, keys.UNIT_RUN, keys.SLACK_LATENCY),
)
def deliver_slack_alerts(unit_id: str, retry: bool = False) -> int:
    """Post the OU's pending alerts; reschedules itself on rate limits and outages instead of sleeping."""
    settings = Settings.from_env()
    Session = session_factory(settings.database_url, writer=True)  # SQLite: examine reads then writes

    def more_work():
        with Session() as s:
            return has_alert_work(s, unit_id)

    out = run_unit_job(
        "slack",
        unit_id,
        retry,
        keys.SLACK_KICK(unit_id=unit_id),
        lambda redis, lease: deliver_alerts(
            Session, settings, load_or_create_secret(Session), unit_id, still_held=lease.renew
        ),
        more_work,
        lambda redis, unit, delay: enqueue_alerts(redis, settings.queue_name, unit, delay=delay),
        meanwhile=lambda: examine_all(Session, unit_id),
    )  # alerts are decided on time, posted after the wait
    if out is None:
        return 0
    record_latencies(get_current_job().connection, list(out.latencies))
    log.info("Slack alerts of %s: %d sent, retry in %s, stopped: %s", unit_id, out.sent, out.retry_in, out.stopped)
    return out.sent


def enqueue_alerts(redis, queue_name: str, unit_id: str, delay: float = 0.0) -> None:
    _enqueue_unit_job(deliver_slack_alerts, redis, queue_name, unit_id, delay)


def kick_alerts(redis, queue_name: str, unit_id: str) -> bool:
    """Enqueue alert delivery for the OU unless one is queued; the job clears the key as it starts, so no delay."""
    queue = deliver_slack_alerts.queue(redis, queue_name)
    [job_id] = mark_queued(redis, queue, [keys.SLACK_KICK(unit_id=unit_id)], keys.SLACK_KICK.ttl)
    if job_id is None:
        return False
    deliver_slack_alerts.enqueue(redis, queue_name, unit_id, job_id=job_id)
    return True


def try_kick_alerts(app_state, unit_id: str, reconfigured: bool = False) -> None:
    """After a commit that may have made alert work (level moves, a new target); if Redis is down the sweep does it.

    reconfigured: a new install or target ends any wait a refused target or an outage had set.
    """
    try:
        if reconfigured:
            app_state.redis.delete(keys.UNIT_WAIT(kind="slack", unit_id=unit_id))
        kick_alerts(app_state.redis, app_state.settings.queue_name, unit_id)
    except Exception as exc:
        log.warning("could not enqueue Slack alerts (%s); the sweep will", exc.__class__.__name__)


def record_latencies(redis, seconds: list[float]) -> None:
    """event_to_slack_latency_seconds as a histogram in Redis, so /metrics on any web process reports every worker."""
    if not seconds:
        return
    key = keys.SLACK_LATENCY()
    pipe = redis.pipeline(transaction=False)
    for value in seconds:
        bucket = next((str(b) for b in LATENCY_BUCKETS if value <= b), "+Inf")
        pipe.hincrby(key, bucket, 1)
        pipe.hincrbyfloat(key, "sum", value)
        pipe.hincrby(key, "count", 1)
    pipe.execute()


# Lead deletion ------------------------------------------------------------------------------------------------------


def lead_deletion_failed(job, connection, exc_type, exc_value, tb):
    """Out of retries: the receipt says failed with the reason, so GET /lead/{id}/deletion-status tells the truth."""
    if job.retries_left:
        return
    Session = session_factory(Settings.from_env().database_url, writer=True)
    with Session() as s, s.begin():
        mark_failed(s, job.args[0], f"{exc_type.__name__}: {exc_value}")


@job(
    timeout=1800,
    description="delete lead (deletion {0})",
    retry=Retry(max=3, interval=[10, 60, 300]),
    on_failure=lead_deletion_failed,
    unique_id="leadpulse-lead-deletion-{0}",
)
def delete_lead(deletion_id: int) -> bool:
    """Remove a lead and everything hanging off it (retried by RQ on failure)."""
    return run_deletion(session_factory(Settings.from_env().database_url, writer=True), deletion_id)


def enqueue_lead_deletion(redis, queue_name: str, deletion_id: int) -> bool:
    """One job per deletion, whoever asks (the request, the sweep): False when one is queued, running or retrying."""
    return delete_lead.enqueue(redis, queue_name, deletion_id) is not None


# Audit log retention ------------------------------------------------------------------------------------------------

AUDIT_PRUNE_BATCH = 5000  # rows per transaction: short locks, short transactions
AUDIT_PRUNE_SECONDS = 240  # then stop; the next sweep's job (within the hour) goes on


@job(
    timeout=300,
    description="prune the audit log",
    unique_id="leadpulse-audit-prune",
    keys=(keys.AUDIT_PRUNE,),
)
def prune_audit_log() -> int:
    """Delete audit entries older than AUDIT_LOG_RETENTION_DAYS (0 keeps them all); returns how many went."""
    settings = Settings.from_env()
    if settings.audit_log_retention_days <= 0:
        return 0
    Session = session_factory(settings.database_url, writer=True)
    before = utcnow() - timedelta(days=settings.audit_log_retention_days)
    deadline = time.monotonic() + AUDIT_PRUNE_SECONDS
    total = 0
    while True:
        with Session() as s, s.begin():
            gone = prune(s, before, AUDIT_PRUNE_BATCH)
        total += gone
        if gone < AUDIT_PRUNE_BATCH or time.monotonic() > deadline:
            break
    if total:
        log.info("pruned %d audit entries older than %s", total, before.isoformat())
    return total


def kick_audit_prune(redis, queue_name: str) -> bool:
    """From the sweep: at most one pruning an hour, whichever worker sweeps first; True when one was enqueued."""
    if not redis.set(keys.AUDIT_PRUNE(), 1, nx=True, ex=keys.AUDIT_PRUNE.ttl):
        return False
    return prune_audit_log.enqueue(redis, queue_name) is not None


# Decay ----------------------------------------------------------------------------------------------------------------

DECAY_TIMEOUT = 1800


def decay_pass(settings: Settings, redis=None, unit_id: str | None = None, now=None) -> DecayRun:
    """One decay pass (models/decay_pass.py) as of now, then wake scoring for the DECAY events it stored (if Redis is
    there)."""
    run = run_decay(session_factory(settings.database_url, writer=True), now=now, unit_id=unit_id)
    if run.events and redis is not None:
        kick_scoring(redis, settings.queue_name, settings.scoring_parallelism)
    return run


@job(
    timeout=DECAY_TIMEOUT,
    description="decay pass",
    retry=Retry(max=3, interval=[10, 60, 300]),
    unique_id="leadpulse-decay",
    keys=(keys.DECAY_KICK,),
)
def apply_decay() -> int:
    """Store every decay period that ended and is not stored yet, across all OUs; returns DECAY events stored.

    Safe to run twice, late or concurrently: each period is stored once (models/decay_pass.py).
    """
    run = decay_pass(Settings.from_env(), get_current_job().connection)
    if run.events:
        log.info("decay pass: %d DECAY events for %d leads in %d OUs", run.events, run.leads, len(run.units))
    return run.events


def kick_decay(redis, queue_name: str, every: int) -> bool:
    """From the sweep: one decay pass per `every` seconds, whichever worker sweeps first; True when one was enqueued."""
    if not redis.set(keys.DECAY_KICK(), 1, nx=True, ex=max(1, every)):
        return False
    return apply_decay.enqueue(redis, queue_name) is not None
