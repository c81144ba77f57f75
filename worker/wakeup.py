"""Waking scoring without one job per event: a Redis flag per scoring slot, set at most once."""
from __future__ import annotations

import logging

from rq import Callback, Queue

log = logging.getLogger("leadpulse.wakeup")

FLAG_TTL = 120  # seconds; a running job refreshes it, a dead one lets it lapse so the sweep can re-kick
JOB_TIMEOUT = 300
RESULT_TTL = 60
FAILURE_TTL = 7 * 24 * 3600
METRICS_KEY = "leadpulse:metrics"  # hash of counters the workers add to
ALERTS_TIMEOUT = 300  # seconds; a delivery run hands over after 60
HUBSPOT_SYNC_TIMEOUT = 600


def urgent_queue(queue_name: str) -> str:
    """Alerts go here; workers take from it first, and a scoring job hands its worker over when something waits in it."""
    return f"{queue_name}-urgent"


def worker_queues(queue_name: str) -> list[str]:
    return [urgent_queue(queue_name), queue_name]


def flag_key(slot: int) -> str:
    return f"leadpulse:score:slot:{slot}"


def kick_scoring(redis, queue_name: str, slots: int, only: list[int] | None = None) -> list[int]:
    """Enqueue a scoring job for each slot that has none running or queued; returns the slots kicked."""
    wanted = list(range(slots)) if only is None else only
    pipe = redis.pipeline(transaction=False)
    for slot in wanted:
        pipe.set(flag_key(slot), 1, nx=True, ex=FLAG_TTL)
    acquired = [slot for slot, ok in zip(wanted, pipe.execute()) if ok]
    if acquired:
        queue = Queue(queue_name, connection=redis)
        for slot in acquired:
            queue.enqueue(
                "worker.jobs.score_slot",
                slot,
                slots,
                job_timeout=JOB_TIMEOUT,
                result_ttl=RESULT_TTL,
                failure_ttl=FAILURE_TTL,
                on_failure=Callback("worker.jobs.release_slot_on_failure"),
                description=f"score pending events, slot {slot}/{slots}",
            )
    return acquired


def try_kick(app_state) -> None:
    """After an event is committed: wake scoring if Redis is up; the sweep covers it if not."""
    try:
        kick_scoring(app_state.redis, app_state.settings.queue_name, app_state.settings.scoring_parallelism)
    except Exception as exc:  # Redis down: the event is safe in the database
        log.warning("could not wake scoring (%s); the sweep will pick the event up", exc.__class__.__name__)


def try_kick_alerts(app_state, unit_id: str, reconfigured: bool = False) -> None:
    """After a commit that may have made alert work (level moves, a new target); if Redis is down the sweep does it.

    reconfigured: a new install or target ends any wait a refused target or an outage had set.
    """
    try:
        if reconfigured:
            app_state.redis.delete(wait_key("slack", unit_id))
        kick_alerts(app_state.redis, app_state.settings.queue_name, unit_id)
    except Exception as exc:
        log.warning("could not enqueue Slack alerts (%s); the sweep will", exc.__class__.__name__)


def enqueue_hubspot_options(redis, queue_name: str, unit_id: str) -> None:
    """One idempotent job per request; level edits are rare, and the job is a no-op once current."""
    from rq import Retry

    Queue(queue_name, connection=redis).enqueue(
        "worker.jobs.sync_hubspot_options", unit_id,
        job_timeout=120, result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
        retry=Retry(max=5, interval=[10, 30, 60, 300, 900]),
        description=f"HubSpot engagement_level options for OU {unit_id}",
    )


def kick_hubspot_sync(redis, queue_name: str, unit_id: str) -> bool:
    """Enqueue a contact sync for the OU, at most once per couple of seconds (the job coalesces the rest)."""
    if redis.exists(wait_key("hubspot", unit_id)) or not redis.set(hubspot_kick_key(unit_id), 1, nx=True, ex=2):
        return False
    enqueue_hubspot_sync(redis, queue_name, unit_id)
    return True


def hubspot_kick_key(unit_id: str) -> str:
    return f"leadpulse:hubspot:kick:{unit_id}"


def alerts_kick_key(unit_id: str) -> str:
    return f"leadpulse:slack:kick:{unit_id}"


def wait_key(kind: str, unit_id: str) -> str:
    """Set while an OU's job waits out a rate limit, a backoff or a refused target: kicks (activity, the sweep) hold
    off, and the retry already scheduled for the end of the wait runs it."""
    return f"leadpulse:{kind}:wait:{unit_id}"


def kick_alerts(redis, queue_name: str, unit_id: str) -> bool:
    """Enqueue alert delivery for the OU unless one is queued; the job clears the key as it starts, so no delay."""
    if not redis.set(alerts_kick_key(unit_id), 1, nx=True, ex=30):
        return False
    enqueue_alerts(redis, queue_name, unit_id)
    return True


def enqueue_alerts(redis, queue_name: str, unit_id: str, delay: float = 0.0) -> None:
    _enqueue_maybe_later(redis, urgent_queue(queue_name), "worker.jobs.deliver_slack_alerts", unit_id, delay,
                         job_timeout=ALERTS_TIMEOUT, description=f"Slack alerts for OU {unit_id}")


def _enqueue_maybe_later(redis, queue_name: str, func: str, unit_id: str, delay: float, **options) -> None:
    from datetime import timedelta

    queue = Queue(queue_name, connection=redis)
    options.update(result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL)
    if delay > 0:  # the retry at the end of a wait: it runs although the wait may not have lapsed on Redis's clock yet
        queue.enqueue_in(timedelta(seconds=delay), func, unit_id, True, **options)
    else:
        queue.enqueue(func, unit_id, **options)


def enqueue_lead_deletion(redis, queue_name: str, deletion_id: int) -> bool:
    """One job per deletion, whoever asks (the request, the sweep): False when one is queued, running or retrying."""
    from rq import Retry
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    job_id = f"leadpulse-lead-deletion-{deletion_id}"
    try:
        live = Job.fetch(job_id, connection=redis).get_status() in (
            JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED)
    except NoSuchJobError:
        live = False
    if live:
        return False
    Queue(queue_name, connection=redis).enqueue(
        "worker.jobs.delete_lead", deletion_id, job_id=job_id, job_timeout=1800, result_ttl=RESULT_TTL, failure_ttl=FAILURE_TTL,
        retry=Retry(max=3, interval=[10, 60, 300]), on_failure=Callback("worker.jobs.lead_deletion_failed"),
        description=f"delete lead (deletion {deletion_id})",
    )
    return True


LATENCY_KEY = "leadpulse:metrics:event_to_slack"
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)


def record_latencies(redis, seconds: list[float]) -> None:
    """event_to_slack_latency_seconds as a histogram in Redis, so /metrics on any web process reports every worker."""
    if not seconds:
        return
    pipe = redis.pipeline(transaction=False)
    for value in seconds:
        bucket = next((str(b) for b in LATENCY_BUCKETS if value <= b), "+Inf")
        pipe.hincrby(LATENCY_KEY, bucket, 1)
        pipe.hincrbyfloat(LATENCY_KEY, "sum", value)
        pipe.hincrby(LATENCY_KEY, "count", 1)
    pipe.execute()


def enqueue_hubspot_sync(redis, queue_name: str, unit_id: str, delay: float = 0.0) -> None:
    _enqueue_maybe_later(redis, queue_name, "worker.jobs.sync_hubspot_contacts", unit_id, delay,
                         job_timeout=HUBSPOT_SYNC_TIMEOUT, description=f"HubSpot contact sync for OU {unit_id}")
