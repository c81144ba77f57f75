"""How a job is declared and enqueued: by reference, with its queue, timeout, TTLs, retry and the keys it owns.

Every job is declared once, with @job, in worker/jobs.py; docs/architecture.md lists them.
"""

from __future__ import annotations

import uuid
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


QUEUED = "queued:"  # a kick's mark: "queued:<job id>", the job that waits for the key's work

# KEYS[1]: the queue's list; KEYS[2..]: the marks. ARGV[1]: their TTL (ms); ARGV[2..]: a fresh job id for each mark.
# A free key is marked for the fresh job (1: enqueue it). A key marked for a job still in the list is renewed (0); any
# other value is left to lapse (0): a lease's holder renews its own, and a mark whose job left the list unrenewed was
# taken by a worker that died before it took the key over, or was never enqueued (its kicker died in between).
_MARK = """
local marked = {}
for i = 2, #KEYS do
  local v = redis.call('get', KEYS[i])
  if not v then
    redis.call('set', KEYS[i], 'queued:' .. ARGV[i], 'PX', ARGV[1])
    marked[i - 1] = 1
  else
    if string.sub(v, 1, 7) == 'queued:' and redis.call('lpos', KEYS[1], string.sub(v, 8)) then
      redis.call('pexpire', KEYS[i], ARGV[1])
    end
    marked[i - 1] = 0
  end
end
return marked
"""


def mark_queued(redis, queue: Queue, marks: list[str], ttl: float) -> list[str | None]:
    """Mark each key free of a job for one about to be enqueued on `queue`; returns the job id to enqueue it under,
    or None where a job holds the key or still waits for it in the queue (its mark renewed: it lives while it waits).

    A mark outlives neither its job's place in the queue nor its kicker by more than `ttl`: a worker killed between
    taking the job and taking the key over, or a kicker killed before its enqueue, holds the work up `ttl` seconds at
    most, as a dead lease's holder does (docs/guarantees.md)."""
    if not marks:
        return []
    ids = [uuid.uuid4().hex for _ in marks]
    marked = redis.eval(_MARK, 1 + len(marks), queue.key, *marks, int(ttl * 1000), *ids)
    return [job_id if ok else None for job_id, ok in zip(ids, marked, strict=True)]


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

    def enqueue(self, redis, queue_name: str, *args, delay: float = 0.0, job_id: str | None = None) -> Job | None:
        """Enqueue with the declared options (after delay seconds if given, under job_id if given: the id a mark
        names, see mark_queued); None when a live job has the unique id."""
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
        elif job_id is not None:
            options["job_id"] = job_id
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
