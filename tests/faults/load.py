"""The event load: a real client of the HTTP API that keeps sending through faults, as an event source would.

Every event carries an `event_id` (the idempotency key). A request that got no answer, or a 5xx, is sent again with
the same ids until it is answered; an event is *accepted* once a 202 names it (accepted or duplicate). What the
client recorded is the oracle the database is checked against.
"""

from __future__ import annotations

import collections
import http.client
import itertools
import json
import random
import threading
import time
from dataclasses import dataclass, field

from tests.conftest import wait_until

# Positive weights only: a lead's score only rises, so it enters Hot at most once and owes exactly one alert.
WEIGHTS = {"page_view": 1, "email_open": 2, "form_submit": 5, "demo_request": 12}
TYPE_ODDS = {"page_view": 0.5, "email_open": 0.3, "form_submit": 0.15, "demo_request": 0.05}
HOT = 50  # the reference levels' Hot min_score (tests.helpers.REFERENCE_LEVELS), where an alert is owed
BATCH = 100
SINGLES = 4
GIVE_UP_SECONDS = 180  # one request retried this long without a 202: the service never came back
REQUEST_TIMEOUT = 30  # seconds the client waits for each answer


@dataclass(frozen=True)
class Sent:
    event_id: str
    email: str
    event_type: str

    def body(self) -> dict:
        return {
            "aliases": [{"alias_kind": "email", "raw_value": self.email}],
            "event_type": self.event_type,
            "event_id": self.event_id,
        }


class Plan:
    """Events over a fixed set of leads, a few leads much busier than most (so a share of them reaches Hot), made as the
    client needs them, for as long as it sends: the same seed makes the same events."""

    def __init__(self, leads: int, rng: random.Random, prefix: str) -> None:
        self.emails = [f"lead-{i:05d}@{prefix}.faults.test" for i in range(leads)]
        self.prefix, self.rng, self.made = prefix, rng, 0
        self._busy = list(itertools.accumulate(rng.paretovariate(1.2) for _ in self.emails))
        self._types = list(itertools.accumulate(TYPE_ODDS.values()))

    def take(self, count: int) -> list[Sent]:
        emails = self.rng.choices(self.emails, cum_weights=self._busy, k=count)
        types = self.rng.choices(list(TYPE_ODDS), cum_weights=self._types, k=count)
        sent = [Sent(f"{self.prefix}-{self.made + n}", e, t) for n, (e, t) in enumerate(zip(emails, types))]
        self.made += count
        return sent


def expected_scores(events) -> dict[str, int]:
    scores: dict[str, int] = collections.Counter()
    for e in events:
        scores[e.email] += WEIGHTS[e.event_type]
    return dict(scores)


@dataclass
class Reply:
    status_code: int
    json: object


class HttpApi:
    """Just enough of a test client over real HTTP for tests.helpers' setup steps (post/get/put, .status_code, .json)."""

    def __init__(self, port: int, headers: dict) -> None:
        self.port, self.headers = port, headers

    def call(self, method: str, path: str, body=None, timeout: float = 30) -> Reply:
        """One request; a 503 (a web process finding its pooled connection dead after a database restart) is
        retried after its Retry-After, as a client would, for up to a minute."""
        deadline = time.monotonic() + 60
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                conn.request(
                    method,
                    path,
                    body=json.dumps(body) if body is not None else None,
                    headers={"Content-Type": "application/json", **self.headers},
                )
                resp = conn.getresponse()
                raw = resp.read()
                retry_after = float(resp.getheader("Retry-After") or 1)
            finally:
                conn.close()
            if resp.status != 503 or time.monotonic() > deadline:
                return Reply(resp.status, json.loads(raw) if raw else None)
            time.sleep(min(retry_after, 2.0))  # the server asked to be called again later

    def post(self, path: str, json=None) -> Reply:
        return self.call("POST", path, json)

    def put(self, path: str, json=None) -> Reply:
        return self.call("PUT", path, json)

    def get(self, path: str) -> Reply:
        return self.call("GET", path)


@dataclass
class ClientStats:
    """What the client went through: answers by status, failures by kind, and the retries they cost."""

    statuses: collections.Counter = field(default_factory=collections.Counter)
    failures: collections.Counter = field(default_factory=collections.Counter)
    retries: int = 0
    duplicates: int = 0  # events answered "duplicate": a retry of a commit whose answer was lost


class EventLoad:
    """Sends events from a few threads at a steady rate, most in batches (POST /ingest/batch), every SINGLES-th batch's
    one by one (POST /ingest, the ingest lane), retrying each request until it gets its 202.

    It sends until the scenario calls finish() and at least `minimum` events are out: a fault aimed at work in progress
    (a worker mid-batch, Redis mid-job) always finds some, however long the recoveries before it took."""

    def __init__(self, port: int, headers: dict, plan: Plan, minimum: int, rate: float, threads: int = 8) -> None:
        self.port, self.headers, self.plan, self.minimum = port, headers, plan, minimum
        self.rate, self.threads = rate, threads
        self.events: list[Sent] = []  # every event handed to a sending thread (each is sent until answered)
        self.accepted: dict[str, Sent] = {}
        self.stats = ClientStats()
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._finishing = threading.Event()  # no new batch once `minimum` are out
        self._stop = threading.Event()  # give up at once, answered or not (a failed scenario's teardown)
        self._started = 0.0
        self._finished: float | None = None

    # control
    def start(self) -> EventLoad:
        self._started = time.monotonic()
        for n in range(self.threads):
            t = threading.Thread(target=self._run, name=f"faults-load-{n}", daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def finish(self) -> None:
        """Send no new batch once `minimum` events are out; what is out is still sent until answered."""
        self._finishing.set()

    def done(self) -> bool:
        if self._finished is None and not any(t.is_alive() for t in self._workers):
            self._finished = time.monotonic()
        return self._finished is not None

    @property
    def seconds(self) -> float:
        """How long the client took to have every event answered (so far, while it runs)."""
        return (self._finished or time.monotonic()) - self._started

    def join(self, timeout: float) -> None:
        self.finish()
        wait_until(self.done, timeout=timeout, interval=0.1, message="the client to have every event answered")
        assert not self.errors, "the client hit errors it cannot retry:\n" + "\n".join(self.errors[:10])
        missing = len(self.events) - len(self.accepted)
        assert missing == 0, f"{missing} events never got a 202"

    def stop(self) -> None:
        """Give up: each thread ends within a request's timeout (a thread still alive after that is a daemon)."""
        self._stop.set()
        deadline = time.monotonic() + REQUEST_TIMEOUT + 5
        for t in self._workers:
            t.join(timeout=max(0.0, deadline - time.monotonic()))

    def accepted_count(self) -> int:
        with self._lock:
            return len(self.accepted)

    def wait_accepted(self, fraction: float, timeout: float = 120) -> None:
        """Until `fraction` of the minimum is accepted."""
        target = int(self.minimum * fraction)
        wait_until(
            lambda: self.accepted_count() >= target or self.done(),
            timeout=timeout,
            interval=0.02,
            message=f"{target} events accepted",
        )
        assert not self.errors, "the client hit errors it cannot retry:\n" + "\n".join(self.errors[:10])

    def _next_chunk(self) -> tuple[int, list[Sent]] | None:
        with self._lock:
            position = len(self.events)
            if self._finishing.is_set() and position >= self.minimum:
                return None
            chunk = self.plan.take(min(BATCH, self.minimum - position) if position < self.minimum else BATCH)
            self.events += chunk
            return position, chunk

    # sending
    def _run(self) -> None:
        conn: list[http.client.HTTPConnection | None] = [None]
        try:
            while not self._stop.is_set():
                taken = self._next_chunk()
                if taken is None:
                    return
                position, chunk = taken
                due = self._started + position / self.rate
                if self._stop.wait(max(0.0, due - time.monotonic())):  # pacing the client's own rate
                    return
                if (position // BATCH) % SINGLES == SINGLES - 1:
                    for event in chunk:
                        self._deliver(conn, "/ingest", event.body(), [event])
                else:
                    self._deliver(conn, "/ingest/batch", {"events": [e.body() for e in chunk]}, chunk)
        except Exception as exc:
            self.errors.append(f"{exc.__class__.__name__}: {exc}")
        finally:
            if conn[0] is not None:
                conn[0].close()

    def _deliver(self, conn: list, path: str, body: dict, events: list[Sent]) -> None:
        payload = json.dumps(body)
        deadline = time.monotonic() + GIVE_UP_SECONDS
        backoff = 0.05
        while True:
            wait = None
            try:
                if conn[0] is None:
                    conn[0] = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
                conn[0].request(
                    "POST", path, body=payload, headers={"Content-Type": "application/json", **self.headers}
                )
                resp = conn[0].getresponse()
                raw = resp.read()
                with self._lock:
                    self.stats.statuses[resp.status] += 1
                if resp.status == 202:
                    self._record(path, json.loads(raw), events)
                    return
                if resp.status == 429 or resp.status >= 500:
                    wait = float(resp.getheader("Retry-After") or 0) or None
                else:
                    raise AssertionError(f"POST {path} answered {resp.status}: {raw[:500]!r}")
                if resp.getheader("Connection", "").lower() == "close":
                    conn[0].close()
                    conn[0] = None
            except (OSError, http.client.HTTPException) as exc:  # no answer: it may or may not have been committed
                with self._lock:
                    self.stats.failures[exc.__class__.__name__] += 1
                if conn[0] is not None:
                    conn[0].close()
                conn[0] = None
            if time.monotonic() > deadline:
                raise AssertionError(f"POST {path} got no 202 within {GIVE_UP_SECONDS} s")
            with self._lock:
                self.stats.retries += 1
            if self._stop.wait(min(wait or backoff, 2.0)):  # a client's backoff between retries
                return
            backoff = min(backoff * 2, 1.0)

    def _record(self, path: str, answer: dict, events: list[Sent]) -> None:
        results = (
            answer["results"]
            if path == "/ingest/batch"
            else [{"status": "duplicate" if answer["duplicate"] else "accepted", "event_id": answer["event_id"]}]
        )
        assert len(results) == len(events), f"{len(results)} results for {len(events)} events"
        with self._lock:
            for event, result in zip(events, results):
                if result["status"] not in ("accepted", "duplicate") or result["event_id"] != event.event_id:
                    raise AssertionError(f"{event.event_id} answered {result}")
                self.stats.duplicates += result["status"] == "duplicate"
                self.accepted[event.event_id] = event
