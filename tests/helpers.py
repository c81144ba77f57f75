"""Shared test steps: configure an OU through the API the way a user would."""

from __future__ import annotations

import random
import socket
from contextlib import contextmanager
from pathlib import Path

from rq.job import Job

REFERENCE_LEVELS = [
    {"name": "Cold", "min_score": 0, "max_score": 24, "color": "#94a3b8", "order": 1},
    {"name": "Warm", "min_score": 25, "max_score": 49, "color": "#fbbf24", "order": 2},
    {"name": "Hot", "min_score": 50, "max_score": 74, "color": "#f97316", "order": 3},
    {"name": "Very Hot", "min_score": 75, "max_score": None, "color": "#ef4444", "order": 4},
]


def create_levels(api, levels=REFERENCE_LEVELS) -> dict[str, str]:
    ids = {}
    for level in levels:
        r = api.post("/engagement-levels", json=level)
        assert r.status_code == 201, r.json
        ids[level["name"]] = r.json["id"]
    return ids


def published_ruleset(api, weights: dict[str, int], name="Engagement", primary=True) -> str:
    r = api.post("/rulesets", json={"name": name, "is_primary": primary})
    assert r.status_code == 201, r.json
    rs = r.json["ruleset_id"]
    for event_type, weight in weights.items():
        r = api.post("/rules", json={"ruleset_id": rs, "event_type": event_type, "weight": weight})
        assert r.status_code == 201, r.json
    r = api.post(f"/rulesets/{rs}/publish")
    assert r.status_code == 200, r.json
    return rs


def ingest(api, lead_id, event_type, **extra):
    r = api.post("/ingest", json={"lead_id": lead_id, "event_type": event_type, **extra})
    assert r.status_code == 202, r.json
    return r.json


def metric(client, sample: str) -> float:
    """A sample's value in /metrics, 0 when absent. Counters belong to the process, which every test before this one
    in it added to: a test compares the value before and after what it does."""
    for line in client.get("/metrics").get_data(as_text=True).splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def leads_by_id(api, **params) -> dict[str, dict]:
    r = api.get("/leads", query_string=params)
    assert r.status_code == 200, r.json
    return {lead["lead_id"]: lead for lead in r.json}


def run_scheduled(settings, redis_conn, run_worker):
    """Move jobs that asked to run later (after a 429) into their queues, as the RQ scheduler would, then run them."""
    for queue in worker_queues_of(settings, redis_conn):
        registry = scheduled(queue)
        for job_id in registry.get_job_ids():
            registry.remove(job_id)
            queue.enqueue_job(Job.fetch(job_id, connection=redis_conn))
    run_worker()


def worker_queues_of(settings, redis_conn):
    from rq import Queue

    from worker.registry import worker_queues

    return [Queue(name, connection=redis_conn) for name in worker_queues(settings.queue_name)]


def scheduled(queue):
    from rq.registry import ScheduledJobRegistry

    return ScheduledJobRegistry(queue=queue)


def scheduled_jobs(settings, redis_conn) -> list[tuple[str, object]]:
    """(job id, scheduled time) of every job waiting to run later, in any of the workers' queues."""
    return [
        (job_id, scheduled(q).get_scheduled_time(job_id))
        for q in worker_queues_of(settings, redis_conn)
        for job_id in scheduled(q).get_job_ids()
    ]


def settle(app, run_worker, timeout: float = 30):
    """Run the worker until every accepted event is scored: the wake-up after an ingest commit is asynchronous."""
    from sqlalchemy import func, select

    from models.events import PENDING, Event
    from tests.conftest import wait_until

    def done():
        run_worker()
        with app.extensions["leadpulse"].Session() as s:
            return s.execute(select(func.count()).select_from(Event).where(Event.status == PENDING)).scalar() == 0

    wait_until(done, timeout=timeout, interval=0.02, message="every accepted event to be scored")


PORTS = random.SystemRandom()  # not the seeded global one (hypothesis fixes it per example; xdist workers alike)


def free_port() -> int:
    """A port nothing listens on now, for a server a test starts (or restarts on it after a kill): below the kernel's
    ephemeral range, so that no client socket or fake server bound to port 0 meanwhile can be given it."""
    low, _ = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    while True:
        port = PORTS.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # taken: another
                continue
            return port


@contextmanager
def serving(wsgi_app, record: bool = True):
    """wsgi_app over real HTTP on a free 127.0.0.1 port, in a thread, for clients with their own HTTP stack; yields its URL.

    Our Flask app's answers are held to the OpenAPI document too, as the test client's are, unless record is False:
    recording buffers each answer, which an event stream never finishes (a browser on the console's pages)."""
    import threading

    from flask import Flask
    from werkzeug.serving import make_server

    from tests.fakes._server import _QuietHandler
    from tests.openapi_check import recorded

    if record and isinstance(wsgi_app, Flask) and "leadpulse" in wsgi_app.extensions:
        wsgi_app = recorded(wsgi_app)

    server = make_server("127.0.0.1", 0, wsgi_app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def stubborn_job(seconds: float) -> str:
    """A job that swallows its timeout (as a broad `except` would) and runs on: the worker's watchdog must end it."""
    import time

    from rq.timeouts import JobTimeoutException

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            time.sleep(0.05)
        except JobTimeoutException:
            pass
    return "finished"


def slow_job(seconds: float) -> str:
    import time

    time.sleep(seconds)
    return "finished"


@contextmanager
def statements_sent():
    """Every statement psycopg sends while the block runs, whichever layer (SQLAlchemy or the driver) sent it."""
    import psycopg

    sent: list[str] = []
    execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany

    def counted(original):
        def call(self, query, *args, **kwargs):
            sent.append(
                query
                if isinstance(query, str)
                else query.as_string(self)
                if hasattr(query, "as_string")
                else str(query)
            )
            return original(self, query, *args, **kwargs)

        return call

    psycopg.Cursor.execute, psycopg.Cursor.executemany = counted(execute), counted(executemany)
    try:
        yield sent
    finally:
        psycopg.Cursor.execute, psycopg.Cursor.executemany = execute, executemany
