"""How a job is declared and enqueued: by reference, with its queue, timeout, TTLs, retry and the keys it owns.

Every job is declared once, with @job, in worker/jobs.py; docs/architecture.md lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from rq import Callback, Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from integrations.redis_keys import KeyFamily

RESULT_TTL = 60  # seconds a finished job's result stays (nothing reads results)
FAILURE_TTL = 7 * 24 * 3600  # a failed job stays inspectable in RQ's failed registry for a week
_LIVE = (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED)


def urgent_queue(queue_name: str) -> str:
    """Alerts go here; workers take from it first, and a scoring job hands its worker over when something waits in it."""
    return f"{queue_name}-urgent"


def worker_queues(queue_name: str) -> list[str]:
    """The queues a worker serves, the urgent one first."""
    return [urgent_queue(queue_name), queue_name]


def queue_depth(redis, queue_name: str) -> int:
    """Jobs waiting in a queue, through RQ's API (its keys are RQ's business)."""
    return Queue(queue_name, connection=redis).count


@dataclass(frozen=True)
class JobSpec:
    """A declared job; calling it runs the function (RQ finds the declaration at the function's own import path)."""

    func: Callable
    timeout: int
    description: str  # formatted with the job's arguments by position: "{0}"
    urgent: bool = False
    retry: Retry | None = None
    on_failure: Callable | None = None
    unique_id: str | None = None  # formatted like description: at most one live job with this id (dedupe)
    keys: tuple[KeyFamily, ...] = field(default=())
    result_ttl: int = RESULT_TTL
    failure_ttl: int = FAILURE_TTL

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)

    @property
    def name(self) -> str:
        return f"{self.func.__module__}.{self.func.__qualname__}"

    def queue(self, redis, queue_name: str) -> Queue:
        return Queue(urgent_queue(queue_name) if self.urgent else queue_name, connection=redis)

    def enqueue(self, redis, queue_name: str, *args, delay: float = 0.0) -> Job | None:
        """Enqueue with the declared options (after delay seconds if given); None when a live job has the unique id."""
        options = dict(
            job_timeout=self.timeout,
            result_ttl=self.result_ttl,
            failure_ttl=self.failure_ttl,
            description=self.description.format(*args),
            retry=self.retry,
            on_failure=Callback(self.on_failure) if self.on_failure else None,
        )
        if self.unique_id is not None:
            options["job_id"] = self.unique_id.format(*args)
            if _live(redis, options["job_id"]):
                return None
        queue = self.queue(redis, queue_name)
        if delay > 0:
            return queue.enqueue_in(timedelta(seconds=delay), self.func, *args, **options)
        return queue.enqueue(self.func, *args, **options)


def _live(redis, job_id: str) -> bool:
    try:
        return Job.fetch(job_id, connection=redis).get_status() in _LIVE
    except NoSuchJobError:
        return False


JOBS: dict[str, JobSpec] = {}


def job(**declaration) -> Callable[[Callable], JobSpec]:
    """Declare the decorated function as a job (see JobSpec for the fields) and register it."""

    def declare(func: Callable) -> JobSpec:
        spec = JobSpec(func=func, **declaration)
        JOBS[spec.name] = spec
        return spec

    return declare
