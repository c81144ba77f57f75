"""What a missed recovery deadline leaves in its failure message: the state of the moment the limit passed (the
scoring slots in PostgreSQL, LeadPulse's keys, RQ's queues, registries, workers and scheduler locks in Redis, the
workers' database sessions) and every worker's whole log, so a stall can be explained from the report alone."""

from __future__ import annotations

from datetime import datetime

from redis import Redis
from rq import Queue, Worker
from rq.intermediate_queue import IntermediateQueue
from sqlalchemy import text

from tests.faults.oracle import now
from worker.registry import worker_queues

KEYS_SHOWN = 200


def report(stack, since: datetime) -> str:
    """The whole story, section by section; a section that cannot be read says why and the others still show."""
    sections = [f"===== state {(now() - since).total_seconds():.1f} s after the fault at {since.isoformat()}"]
    for title, read in (
        ("scoring slots (PostgreSQL)", lambda: _slots(stack, since)),
        ("worker sessions (pg_stat_activity)", lambda: _sessions(stack)),
        ("Redis: LeadPulse and RQ lock keys", lambda: _keys(stack)),
        ("Redis: RQ queues, registries, workers", lambda: _rq(stack)),
    ):
        try:
            body = read()
        except Exception as exc:  # a server down mid-fault: say so, show the rest
            body = f"(unreadable: {exc.__class__.__name__}: {exc})"
        sections.append(f"----- {title}\n{body}")
    deployment = stack.deployment
    for proc in [*deployment.workers, *deployment.retired]:
        sections.append(f"----- {proc.name} pid {proc.pid} (exit {proc.exit_code()}), whole log\n{proc.log_tail(None)}")
    return "\n".join(sections)


def _slots(stack, since: datetime) -> str:
    state = stack.store.slots(stack.slots, since) or {}
    lines = [
        f"slot {slot}: {pending} pending, first scored after the fault: {resumed.isoformat() if resumed else 'not yet'}"
        for slot, (pending, resumed) in sorted(state.items())
    ]
    return "\n".join(lines + [f"owed: {stack.store.outstanding()}"])


def _sessions(stack) -> str:
    stmt = text(
        "SELECT application_name, pid, state, xact_start, wait_event_type, wait_event, left(query, 120) "
        "FROM pg_stat_activity WHERE application_name LIKE 'leadpulse-%' ORDER BY application_name, pid"
    )
    return "\n".join(" | ".join(str(v) for v in row) for row in stack.store.rows(stmt)) or "(none)"


def _client(stack) -> Redis:
    return Redis.from_url(stack.redis.url, socket_timeout=5, socket_connect_timeout=2)


def _keys(stack) -> str:
    redis = _client(stack)
    try:
        lines = []
        for pattern in ("leadpulse:*", "rq:scheduler-lock:*"):
            for key in sorted(redis.scan_iter(pattern, count=500))[:KEYS_SHOWN]:
                if redis.type(key) == b"string":
                    lines.append(f"{key.decode()} = {redis.get(key)!r}, pttl {redis.pttl(key)} ms")
        return "\n".join(lines) or "(none)"
    finally:
        redis.close()


def _rq(stack) -> str:
    redis = _client(stack)
    try:
        lines = []
        for name in worker_queues(stack.services.settings.queue_name):
            queue = Queue(name, connection=redis)
            lines.append(f"queue {name}: {queue.get_job_ids()}")
            lines.append(f"  intermediate: {IntermediateQueue(queue.key, redis).get_job_ids()}")
            started = queue.started_job_registry
            lines.append(
                f"  started: {redis.zrange(started.key, 0, -1, withscores=True)} (now {now().timestamp():.1f})"
            )
            lines.append(f"  scheduled: {queue.scheduled_job_registry.get_job_ids()}")
            lines.append(f"  failed: {queue.failed_job_registry.count}")
            for job_id in [*queue.get_job_ids(), *started.get_job_ids()][:20]:
                job = queue.fetch_job(job_id)
                if job is not None:
                    lines.append(f"  {job_id}: {job.description}, {job.get_status()}, worker {job.worker_name}")
        for w in Worker.all(connection=redis):
            lines.append(
                f"worker {w.name} pid {w.pid}: {w.get_state()}, job {w.get_current_job_id()}, "
                f"heartbeat {w.last_heartbeat}, ttl {redis.ttl(w.key)} s"
            )
        return "\n".join(lines)
    finally:
        redis.close()
