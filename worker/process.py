"""The `leadpulse worker` process: jobs run in it (no fork per job), with a watchdog in place of the work-horse kill."""

from __future__ import annotations

import logging
import os
import threading
import time

from rq import SimpleWorker

log = logging.getLogger("leadpulse.worker")
WATCHDOG_EXIT = 70  # the process's exit status when a job outlived its timeout: the supervisor restarts it


class WatchedWorker(SimpleWorker):
    """Forking a work-horse and opening its connections cost ~0.1 s of CPU per job, most of an alert's latency. In this
    process a job's timeout is a SIGALRM the job could swallow; a job still running `grace` seconds after its timeout
    ends the process, as RQ's kill of the work-horse did (and before RQ deems the job abandoned, at timeout + 60 s)."""

    def __init__(self, *args, grace: float = 30.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.grace = grace
        self._deadline: float | None = None
        self._watching = False
        self._ended = threading.Event()

    def execute_job(self, job, queue):
        if not self._watching:
            self._watching = True
            threading.Thread(target=self._watch, name="leadpulse-job-watchdog", daemon=True).start()
        timeout = job.timeout if job.timeout and job.timeout > 0 else queue.DEFAULT_TIMEOUT
        self._deadline = time.monotonic() + timeout + self.grace
        try:
            return super().execute_job(job, queue)
        finally:
            self._deadline = None

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
        """The watchdog ends with the work loop: burst workers (the tests run many in one process) leave no thread."""
        self._ended.set()
        super().teardown()

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
