"""The `leadpulse worker` process: jobs run in it (no fork per job), with a watchdog in place of the work-horse kill,
and it rides out Redis outages instead of quitting."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import SimpleWorker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.exceptions import InvalidJobOperation
from rq.job import JobStatus
from rq.scheduler import RQScheduler

log = logging.getLogger("leadpulse.worker")
WATCHDOG_EXIT = 70  # the process's exit status when a job outlived its timeout: the supervisor restarts it
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError)  # BusyLoadingError (a restart loading its data) is one too
RECONNECT_WAIT = (0.25, 5.0)  # first and longest pause between tries while Redis is away


class ParentBoundScheduler(RQScheduler):
    """RQ's scheduler process, ended with its worker: RQ's own runs on after a kill -9 of the worker alone (the OOM
    killer's, an operator's), an orphan per kill that keeps the scheduler locks, so no new worker's scheduler starts."""

    _worker_pid: int | None = None  # set by the worker before it forks this process (WatchedWorker._start_scheduler)

    def heartbeat(self):
        worker = getattr(self, "_worker_pid", None)
        if worker is not None and os.getppid() != worker:  # re-parented: the worker died
            self.log.warning("Scheduler %s: its worker (pid %s) is gone; stopping", self.name, worker)
            self.request_stop()  # the loop's next turn releases the locks and ends the process
        super().heartbeat()


class WatchedWorker(SimpleWorker):
    """Forking a work-horse and opening its connections cost ~0.1 s of CPU per job, most of an alert's latency. In this
    process a job's timeout is a SIGALRM the job could swallow; a job still running `grace` seconds after its timeout
    ends the process, as RQ's kill of the work-horse did (and before RQ deems the job abandoned, at timeout + 60 s)."""

    max_connection_wait_time = RECONNECT_WAIT[1]  # RQ's idle dequeue retries back off to 60 s otherwise

    def __init__(self, *args, grace: float = 30.0, on_reconnect: Callable[[], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.grace = grace
        self.on_reconnect = on_reconnect  # after an outage: find in the database what Redis lost (the sweep)
        self._deadline: float | None = None
        self._watching = False
        self._ended = threading.Event()
        self._redis_lost = False
        self._lost_jobs: list = []  # (job, queue) whose bookkeeping the outage cut short

    def _start_scheduler(
        self,
        burst=False,
        logging_level="INFO",
        date_format=DEFAULT_LOGGING_DATE_FORMAT,
        log_format=DEFAULT_LOGGING_FORMAT,
    ):
        """RQ's _start_scheduler with ParentBoundScheduler: take the scheduler locks if free, then run the scheduler
        in a forked process (burst: enqueue what is due, once, here)."""
        self.scheduler = ParentBoundScheduler(
            self.queues,
            connection=self.connection,
            logging_level=logging_level if logging_level is not None else self.log.level,
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,
        )
        self.scheduler.acquire_locks()
        if not self.scheduler.acquired_locks:
            return
        if not burst:
            # Before the fork, not in the child: a worker killed before the child ran a line would leave it reading its
            # new parent as its worker, and never stopping.
            self.scheduler._worker_pid = os.getpid()
            self.scheduler.start()
            return
        try:
            self.scheduler.register_birth()
            self.scheduler.enqueue_scheduled_jobs()
        finally:
            self.scheduler.release_locks()
            self.scheduler.register_death()

    def execute_job(self, job, queue):
        if not self._watching:
            self._watching = True
            threading.Thread(target=self._watch, name="leadpulse-job-watchdog", daemon=True).start()
        timeout = job.timeout if job.timeout and job.timeout > 0 else queue.DEFAULT_TIMEOUT
        self._deadline = time.monotonic() + timeout + self.grace
        try:
            return super().execute_job(job, queue)
        except REDIS_DOWN as exc:
            # RQ lets a Redis error in its bookkeeping around a job (the final heartbeat, the result) end the whole
            # worker ("unhandled exception, quitting"). The job's work is in the database: wait for Redis, and the
            # sweep enqueues what is left.
            self._deadline = None
            self._lost_jobs.append((job, queue))
            self._outage(f"around job {job.id}", exc)
        finally:
            self._deadline = None

    # Riding out a Redis outage (seconds to minutes; Redis may come back empty) ----------------------------------------

    def heartbeat(self, timeout=None, pipeline=None):
        """A missed heartbeat is retried by the next one; the first after an outage brings the worker back."""
        if pipeline is not None:
            return super().heartbeat(timeout, pipeline)
        try:
            super().heartbeat(timeout)
        except REDIS_DOWN as exc:
            self._note_lost(exc)
            return
        if self._redis_lost:
            try:
                self._recover()
            except REDIS_DOWN as again:  # gone again: the next heartbeat tries once more
                self._note_lost(again)

    def check_for_suspension(self, burst: bool):
        try:
            super().check_for_suspension(burst)
        except REDIS_DOWN as exc:
            self._outage("checking for suspension", exc)

    def run_maintenance_tasks(self):
        try:
            super().run_maintenance_tasks()
        except REDIS_DOWN as exc:
            self._outage("cleaning registries", exc)

    def _note_lost(self, exc: Exception) -> None:
        if not self._redis_lost:
            log.warning("Worker %s: Redis went away (%s); waiting for it", self.name, exc)
        self._redis_lost = True

    def _outage(self, where: str, exc: Exception) -> None:
        """Wait, backing off, until Redis answers (or a stop is asked for), then recover."""
        log.warning("Worker %s: Redis error %s: %s", self.name, where, exc)
        self._note_lost(exc)
        wait = RECONNECT_WAIT[0]
        while self._redis_lost and not self._stop_requested:
            try:
                self.connection.ping()
                self._recover()
            except REDIS_DOWN:
                self._redis_lost = True
                # Nothing else to do meanwhile: every job comes through Redis. A stop signal's handler tells Redis
                # too, so its error may surface here; the loop then ends on _stop_requested.
                with contextlib.suppress(*REDIS_DOWN):
                    time.sleep(wait)
                wait = min(wait * 2, RECONNECT_WAIT[1])

    def _recover(self) -> None:
        """Redis answers again, perhaps empty: be a registered worker again, settle the jobs the outage cut short,
        restart the scheduler if it died of the outage, and have the sweep find in the database what Redis lost."""
        if not self.connection.hexists(self.key, "birth"):  # flushed (a heartbeat may have left a stub hash)
            self.connection.delete(self.key)
            self.register_birth()
        while self._lost_jobs:
            self._settle(*self._lost_jobs[0])
            self._lost_jobs.pop(0)
        scheduler = self.scheduler
        if scheduler is not None and (scheduler._process is None or not scheduler._process.is_alive()):
            scheduler.acquire_locks(auto_start=True)
        self._redis_lost = False
        log.warning("Worker %s: Redis is back", self.name)
        if self.on_reconnect is not None:
            self.on_reconnect()

    def _settle(self, job, queue) -> None:
        """A job RQ still shows running (or Redis lost) is recorded failed, or retried if its declaration says so,
        so a unique job id is not held forever; one that had finished or failed is left as it is."""
        try:
            if job.get_status(refresh=True) in (JobStatus.FINISHED, JobStatus.FAILED):
                return
        except InvalidJobOperation:  # Redis came back without it
            pass
        execution = next((e for e in list(self.executions.values()) if e.job_id == job.id), None)
        self.handle_job_failure(
            job=job, queue=queue, exc_string="Redis connection lost while the job ran", execution=execution
        )

    def _watch(self) -> None:
        while not self._ended.wait(min(1.0, self.grace / 2)):
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                log.critical(
                    "a job outlived its timeout by %.0f s (it swallowed the timeout?); exiting so the worker restarts",
                    self.grace,
                )
                self._end_scheduler()
                logging.shutdown()
                os._exit(WATCHDOG_EXIT)

    def teardown(self):
        """The watchdog ends with the work loop: burst workers (the tests run many in one process) leave no thread.
        A stop asked for while Redis is away still ends cleanly (its registration lapses by its TTL)."""
        self._ended.set()
        try:
            super().teardown()
        except REDIS_DOWN as exc:
            log.warning("Worker %s: could not register its end with Redis away (%s)", self.name, exc)

    def unsubscribe(self):
        """Stop the pub/sub thread before UNSUBSCRIBE, not after as RQ does: the reply then ends the thread's read.

        In RQ's order a thread that reads the reply before it is told to stop waits sleep_time (60 s in RQ >= 2.3)
        for a new subscription, and the worker waits for it (1 s on redis-py < 8.2, the whole 60 s on 8.2, whose
        stop() joins): a burst worker or a SIGTERM stalled whenever the machine was busy enough to lose that race.
        """
        thread, pubsub = self.pubsub_thread, self.pubsub
        if thread is None:
            return
        try:
            thread.stop(timeout=0)  # redis-py >= 8.2: stop() joins the thread unless told not to wait
        except TypeError:
            thread.stop()  # older redis-py: stop() only clears the thread's running flag
        if thread.is_alive():
            pubsub.unsubscribe()
        thread.join(timeout=5)
        pubsub.close()

    def _end_scheduler(self, wait: float = 5.0) -> None:
        """The scheduler is a forked child: left running, it would outlive this exit as an orphan (one more per restart)."""
        process = self.scheduler._process if self.scheduler is not None else None
        if process is None or not process.is_alive():
            return
        process.terminate()  # SIGTERM: it releases its locks, so the restarted worker's scheduler takes over at once
        process.join(wait)
        if process.is_alive():
            process.kill()
            process.join(wait)
