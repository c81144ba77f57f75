"""Group commit: events from concurrent requests of one web process share one transaction before their 202s.

A commit per request costs a WAL flush and a dozen statements; under load the requests that arrive while
one transaction commits are written together by the next, set-based. With no concurrency a batch is one
event and nothing waits. Each request still gets its 202 only after its event is committed.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from itertools import groupby

from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from models.ingest import IncomingEvent, IngestResult, ingest_many

log = logging.getLogger("leadpulse.ingest")

MAX_BATCH = 500
LINGER_SECONDS = 0.002  # with OS threads, under load, wait this long for company before committing


def _greenlets() -> bool:
    """Whether threads here are gevent greenlets (gunicorn's gevent worker patches threading before the app loads)."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey and monkey.is_module_patched("threading"))


@dataclass
class _Item:
    org_id: str
    unit_id: str
    events: list[IncomingEvent]
    future: Future


class GroupCommitter:
    def __init__(self, Session, after_commit=None, max_batch: int = MAX_BATCH, announce=None):
        self.Session = Session  # models.db.committer_sessions in the app
        self.after_commit = after_commit or (lambda: None)
        self.announce = (
            announce  # called off the commit path with [(unit_id, [(row id, client key, lead_id, event_type)])]
        )
        self._news: queue.SimpleQueue = queue.SimpleQueue()
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._woken = threading.Condition()  # commits that asked to wake scoring, and how many of those were served
        self._wakes_asked = self._wakes_done = 0

    def submit(self, org_id: str, unit_id: str, events: list[IncomingEvent], timeout: float = 30) -> list[IngestResult]:
        """Block until these events are committed (or their batch failed) and return their results.

        Raises TimeoutError only for events that were never written: a batch already under way is waited
        for (the database's lock and statement timeouts bound it), so a 503 never hides a commit.
        """
        self._ensure_thread()
        item = _Item(org_id, unit_id, events, Future())
        self._queue.put(item)
        try:
            return item.future.result(timeout)
        except FutureTimeout:
            if item.future.cancel():
                raise
            return item.future.result()

    def _ensure_thread(self) -> None:
        """One committer thread per process; a forked gunicorn worker starts its own."""
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid != os.getpid():
                # Under OS threads (tests, a threaded server) the committer waits on the database between short
                # bursts of work; with the default 5 ms GIL switch interval every wake-up queues behind the request
                # threads (a convoy). Under `leadpulse web` (gevent) these threads are greenlets and this is moot.
                sys.setswitchinterval(min(sys.getswitchinterval(), 0.0005))
                self._queue = queue.SimpleQueue()
                self._news = queue.SimpleQueue()
                self._wake = threading.Event()
                threading.Thread(target=self._run, name="leadpulse-group-commit", daemon=True).start()
                threading.Thread(target=self._waker, name="leadpulse-wake-scoring", daemon=True).start()
                self._pid = os.getpid()

    def wait_woken(self, timeout: float = 10.0) -> bool:
        """Until scoring has been woken for every commit so far (the 202 does not wait for it): for whoever must see
        the wake-up's job queued, such as a test that drains the queue next, or a graceful shutdown."""
        with self._woken:
            target = self._wakes_asked
            return self._woken.wait_for(lambda: self._wakes_done >= target, timeout)

    def _waker(self) -> None:
        """Wakes scoring after commits, coalesced, off the committer thread: a slow Redis never delays a 202."""
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._woken:
                serving = self._wakes_asked
            try:
                self.after_commit()
            except Exception as exc:
                log.warning("waking scoring failed: %s", exc)
            news = []
            while True:
                try:
                    news.append(self._news.get_nowait())
                except queue.Empty:
                    break
            if news and self.announce is not None:
                try:
                    self.announce(news)
                except Exception as exc:
                    log.warning("announcing new events failed: %s", exc)
            with self._woken:
                self._wakes_done = serving
                self._woken.notify_all()

    def _run(self) -> None:
        # Under gevent (`leadpulse web` on PostgreSQL) the committer yields once to the other ready greenlets before
        # it commits: requests already readable parse and join the batch, and nothing waits on a timer (batches
        # doubled and single-event ingest gained ~20%; a 2 ms linger instead left the process idle at the end of
        # every batch). OS threads (SQLite's gthread web, tests) linger when the last batch had company, so that
        # request threads woken under the GIL can join.
        greenlets = _greenlets()
        linger = 0.0 if greenlets else LINGER_SECONDS
        busy = False
        while True:
            items = [self._queue.get()]
            size = len(items[0].events)
            yielded = not greenlets
            while size < self.max_batch:
                try:
                    item = self._queue.get(timeout=linger) if busy and linger else self._queue.get_nowait()
                except queue.Empty:
                    if yielded:
                        break
                    yielded = True
                    time.sleep(0)  # gevent's: runs whatever is ready (requests read off their sockets), then back
                    continue
                items.append(item)
                size += len(item.events)
            busy = len(items) > 1
            items = [item for item in items if item.future.set_running_or_notify_cancel()]  # drop timed-out ones
            if not items:
                continue
            try:
                self._commit(items)
            except BaseException as exc:  # never let the thread die with requests waiting on it
                for item in items:
                    if not item.future.done():
                        item.future.set_exception(exc)

    def _commit(self, items: list[_Item]) -> None:
        try:
            results = self._write(items)
        except Exception as exc:
            if len(items) == 1 or isinstance(exc, (OperationalError, PoolTimeout)):
                # One request's bad data is found by trying them one by one; an unavailable database is not.
                for item in items:
                    item.future.set_exception(exc)
                return
            log.warning(
                "group commit of %d requests failed (%s); committing them one by one",
                len(items),
                exc.__class__.__name__,
            )
            for item in items:
                self._commit([item])
            return
        fresh_events = any(not r.duplicate for result in results for r in result)
        if fresh_events:  # counted before any answer goes out, so wait_woken after a 202 always waits for this wake-up
            with self._woken:
                self._wakes_asked += 1
        for item, result in zip(items, results):
            item.future.set_result(result)
        if fresh_events:
            if self.announce is not None:
                for item, result in zip(items, results):
                    fresh = [
                        (r.event_id, ev.idempotency_key, r.lead_id, ev.event_type)
                        for ev, r in zip(item.events, result)
                        if not r.duplicate
                    ]
                    if fresh:
                        self._news.put((item.unit_id, fresh))
            self._wake.set()

    def _write(self, items: list[_Item]) -> list[list[IngestResult]]:
        """One transaction; within it one set-based ingest per OU."""
        out: dict[int, list[IngestResult]] = {}
        order = sorted(range(len(items)), key=lambda i: items[i].unit_id)
        with self.Session() as session, session.begin():  # its connections bound lock and statement waits
            for (org_id, unit_id), group in groupby(order, key=lambda i: (items[i].org_id, items[i].unit_id)):
                group = list(group)
                events = [ev for i in group for ev in items[i].events]
                results = iter(ingest_many(session, org_id, unit_id, events))
                for i in group:
                    out[i] = [next(results) for _ in items[i].events]
        return [out[i] for i in range(len(items))]
