"""Real worker processes: exact scores under concurrency, late events, and nothing lost."""

import os
import random
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from models.events import PENDING, Event
from tests.conftest import wait_until
from tests.helpers import create_levels, ingest, leads_by_id, published_ruleset

WEIGHTS = {"page_view": 3, "demo_request": 20, "unsubscribe": -15}
T0 = datetime(2025, 6, 1, tzinfo=UTC)


def pending(app) -> int:
    with app.extensions["leadpulse"].Session() as s:
        return s.execute(select(func.count()).select_from(Event).where(Event.status == PENDING)).scalar()


def expected_scores(sent: list[tuple[str, str, datetime, int]]) -> dict[str, int]:
    """The contract, computed independently: per lead, events by (time, arrival), floored at 0."""
    out: dict[str, int] = {}
    for lead, et, _ts, _seq in sorted(sent, key=lambda e: (e[0], e[2], e[3])):
        out[lead] = max(0, out.get(lead, 0) + WEIGHTS[et])
    return out


def test_several_workers_hot_lead_and_many_leads_exact(api, app, worker_processes):
    create_levels(api)
    published_ruleset(api, WEIGHTS)
    rng = random.Random(7)
    # Small batches so many jobs interleave; workers run while events arrive. Every process shares the
    # app's LEADPULSE_SCORING_PARALLELISM, as in production.
    worker_processes(3, LEADPULSE_SCORE_BATCH=40)  # three workers over the app's two scoring slots
    sent = []
    for seq in range(1500):
        lead = "hot" if seq % 3 == 0 else f"lead-{rng.randrange(120)}"
        et = rng.choice(["page_view", "page_view", "demo_request", "unsubscribe"])
        # Mostly in order, sometimes late (an older timestamp than what was already scored).
        ts = T0 + timedelta(seconds=seq - (rng.randrange(300) if rng.random() < 0.1 else 0))
        ingest(api, lead, et, timestamp=ts.isoformat())
        sent.append((lead, et, ts, seq))
    wait_until(lambda: pending(app) == 0, timeout=120, message="all events scored")
    got = {k: v["score"] for k, v in leads_by_id(api).items()}
    assert got == expected_scores(sent)
    levels = {k: (v["level"] or {}).get("name") for k, v in leads_by_id(api).items()}
    for lead, score in got.items():
        want = "Cold" if score < 25 else "Warm" if score < 50 else "Hot" if score < 75 else "Very Hot"
        assert levels[lead] == want, (lead, score)


def test_late_event_replays_the_floor(api, run_worker):
    published_ruleset(api, WEIGHTS)
    ingest(api, "l1", "unsubscribe", timestamp="2025-06-01T10:00:00Z")
    ingest(api, "l1", "demo_request", timestamp="2025-06-01T11:00:00Z")
    run_worker()
    assert leads_by_id(api)["l1"]["score"] == 20  # floor, then +20
    # A page view that happened before the unsubscribe arrives late: 3 - 15 -> 0, +20 = 20.
    ingest(api, "l1", "page_view", timestamp="2025-06-01T09:00:00Z")
    run_worker()
    assert leads_by_id(api)["l1"]["score"] == 20
    # A demo request before the unsubscribe: 20 + 3 - 15 = 8, + 20 = 28.
    ingest(api, "l1", "demo_request", timestamp="2025-06-01T08:00:00Z")
    run_worker()
    assert leads_by_id(api)["l1"]["score"] == 28


def test_events_accepted_without_workers_are_scored_after_redis_flush(api, app, redis_conn, worker_processes):
    published_ruleset(api, {"page_view": 2})
    for i in range(200):
        ingest(api, f"lead-{i % 20}", "page_view")
    assert pending(app) == 200
    redis_conn.flushdb()  # the wake-up jobs and flags are gone; only the database knows
    worker_processes(1)
    wait_until(lambda: pending(app) == 0, timeout=60, message="the sweep to find and score every event")
    assert {v["score"] for v in leads_by_id(api).values()} == {20}


def test_redis_down_at_ingest_still_accepts(api, app, settings, run_worker):
    from webapp.app_state import AppState

    state: AppState = app.extensions["leadpulse"]
    from redis import Redis

    state.__dict__["redis"] = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    published_ruleset(api, {"page_view": 2})
    r = api.post("/ingest", json={"lead_id": "l1", "event_type": "page_view"})
    assert r.status_code == 202
    assert pending(app) == 1
    # Redis comes back: the sweep (as every worker runs it) finds the event and it is scored.
    from models.db import session_factory
    from worker.sweep import sweep_once

    live = Redis.from_url(settings.redis_url)
    assert sweep_once(session_factory(settings.database_url), live, settings.queue_name, settings.scoring_parallelism)
    run_worker()
    assert pending(app) == 0 and leads_by_id(api)["l1"]["score"] == 2


def test_late_event_replay_keeps_a_paused_rulesets_scores(api, run_worker):
    paused = published_ruleset(api, {"page_view": 7}, name="Paused", primary=True)
    live = published_ruleset(api, {"page_view": 1}, name="Live", primary=False)
    ingest(api, "l1", "page_view", timestamp="2025-06-01T10:00:00Z")
    run_worker()
    assert api.put(f"/rulesets/{paused}", json={"active": False}).status_code == 200
    ingest(api, "l1", "page_view", timestamp="2025-06-01T09:00:00Z")  # late: forces a replay
    run_worker()
    lead = leads_by_id(api)["l1"]
    assert lead["engagement_scores"] == {paused: 7, live: 2}
    assert lead["score"] == 7


def test_config_changes_while_workers_score_lose_nothing(api, app, worker_processes):
    """Publish, unpublish, primary switches and level edits interleaved with scoring end exact."""
    ids = create_levels(api)
    rs = published_ruleset(api, {"page_view": 3, "demo_request": 20}, name="Main", primary=True)
    spare = published_ruleset(api, {"page_view": 1}, name="Spare", primary=False)
    worker_processes(2, LEADPULSE_SCORE_BATCH=15, LEADPULSE_SCORING_PARALLELISM=2)
    rng = random.Random(11)
    sent = []
    steps = [
        lambda: api.post(f"/rulesets/{rs}/unpublish"),
        lambda: api.post(f"/rulesets/{rs}/publish"),
        lambda: api.put(f"/rulesets/{spare}", json={"is_primary": True}),
        lambda: api.put(f"/rulesets/{rs}", json={"is_primary": True}),
        lambda: api.put(f"/engagement-levels/{ids['Warm']}", json={"max_score": 29}),
        lambda: api.put(f"/engagement-levels/{ids['Hot']}", json={"min_score": 30}),
        lambda: api.put(f"/engagement-levels/{ids['Hot']}", json={"min_score": 50}),
        lambda: api.put(f"/engagement-levels/{ids['Warm']}", json={"max_score": 49}),
    ]
    for _round in range(6):
        for _ in range(60):
            seq = len(sent)
            lead = f"lead-{rng.randrange(60)}" if rng.random() < 0.8 else f"new-{seq}"
            et = rng.choice(["page_view", "demo_request"])
            ingest(api, lead, et, timestamp=(T0 + timedelta(seconds=seq)).isoformat())
            sent.append((lead, et))
        for step in steps:
            r = step()
            assert r.status_code in (200, 201), r.json
    wait_until(lambda: pending(app) == 0, timeout=120, message="all events scored")
    want = {}
    for lead, et in sent:
        want[lead] = want.get(lead, 0) + WEIGHTS[et]
    leads = leads_by_id(api)
    assert {k: v["score"] for k, v in leads.items()} == want
    assert {k: v["engagement_scores"][spare] for k, v in leads.items() if v["engagement_scores"].get(spare)} == {
        lead: sum(1 for l2, et in sent if l2 == lead and et == "page_view")
        for lead in want
        if any(l2 == lead and et == "page_view" for l2, et in sent)
    }
    for lead, v in leads.items():
        score = v["score"]
        expected_level = "Cold" if score < 25 else "Warm" if score < 50 else "Hot" if score < 75 else "Very Hot"
        assert v["level"]["name"] == expected_level, (lead, score)


def test_a_job_that_swallows_its_timeout_ends_its_worker(settings, redis_conn, clean, worker_processes):
    """Jobs run in the worker process; one still running `grace` after its timeout ends it (status 70) for a restart,
    as RQ's kill of a forked work-horse did. A job that simply times out fails alone and the worker goes on."""
    from rq import Queue
    from rq.job import JobStatus

    from tests.conftest import wait_until
    from worker.process import WATCHDOG_EXIT

    [proc] = worker_processes(1, LEADPULSE_JOB_GRACE_SECONDS=1)
    queue = Queue(settings.queue_name, connection=redis_conn)
    timed_out = queue.enqueue("tests.helpers.slow_job", 30, job_timeout=1)
    wait_until(
        lambda: timed_out.get_status(refresh=True) == JobStatus.FAILED, timeout=30, message="the slow job to time out"
    )
    assert proc.poll() is None  # the worker goes on
    done = queue.enqueue("tests.helpers.slow_job", 0)
    wait_until(lambda: done.get_status(refresh=True) == JobStatus.FINISHED, timeout=30, message="the next job")
    scheduler = [int(pid) for pid in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()]
    assert scheduler, "the worker runs its scheduler in a child process"
    queue.enqueue("tests.helpers.stubborn_job", 60, job_timeout=1)
    assert proc.wait(timeout=30) == WATCHDOG_EXIT
    assert not [pid for pid in scheduler if os.path.exists(f"/proc/{pid}")], "the scheduler outlived its worker"


def test_a_worker_reconnects_after_the_database_drops_its_connections(
    api, app, settings, redis_conn, worker_processes, tmp_path
):
    """A PostgreSQL restart kills a long-lived worker's pooled connections; its next job pings, reconnects and scores
    without a failed attempt (the web's own connections are not touched: they say they are the web's)."""
    from rq.registry import StartedJobRegistry
    from sqlalchemy import text

    from tests.helpers import worker_queues_of

    published_ruleset(api, WEIGHTS)
    worker_processes(1, LEADPULSE_SWEEP_SECONDS=3600)  # only jobs touch the database after the first sweep
    ingest(api, "ada", "page_view")
    wait_until(lambda: pending(app) == 0, timeout=30, message="the first event scored")
    # Its job commits the scores before it ends: kill the connections once they are back in the pool, not in use.
    wait_until(
        lambda: not any(q.count or StartedJobRegistry(queue=q).count for q in worker_queues_of(settings, redis_conn)),
        timeout=30,
        message="the worker to finish its jobs",
    )
    with app.extensions["leadpulse"].Session() as s, s.begin():
        killed = s.execute(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name LIKE 'leadpulse-worker:%' AND datname = current_database()"
            )
        ).scalar()
    assert killed >= 1
    ingest(api, "ada", "demo_request")
    wait_until(lambda: pending(app) == 0, timeout=30, message="the second event scored")
    assert leads_by_id(api)["ada"]["score"] == 23
    log = (tmp_path / "worker-0.log").read_text()
    assert "scoring batch retry" not in log and "OperationalError" not in log, log[-2000:]


def test_a_burst_worker_stops_at_once_when_its_pubsub_thread_reads_the_unsubscribe_first(settings, redis_conn, clean):
    """On a busy machine the pub/sub thread can handle the UNSUBSCRIBE reply before it is told to stop; the worker
    must not then wait out the thread's 60 s subscription wait (nor RQ's 1 s join)."""
    import threading
    import time

    from rq import Queue

    from worker.process import WatchedWorker
    from worker.registry import worker_queues

    class ThreadFirst(WatchedWorker):
        """Makes the losing interleaving certain: UNSUBSCRIBE returns only once the thread has handled its reply."""

        def subscribe(self):
            super().subscribe()
            pubsub, send = self.pubsub, self.pubsub.unsubscribe

            def unsubscribe(*args):
                out = send(*args)
                wait_until(lambda: not pubsub.subscribed, timeout=5, message="the pub/sub thread to read the reply")
                return out

            pubsub.unsubscribe = unsubscribe

        def unsubscribe(self):
            started = time.monotonic()
            super().unsubscribe()
            stopping.append(time.monotonic() - started)

    stopping = []  # how long the worker took to stop its pub/sub: the whole stall was here (60 s, or RQ's 1 s join)
    queues = [Queue(name, connection=redis_conn) for name in worker_queues(settings.queue_name)]
    queues[0].enqueue(os.getpid)  # one job, so the job watchdog starts too
    worker = ThreadFirst(queues, connection=redis_conn)
    assert worker.work(burst=True, logging_level="WARNING")
    assert len(stopping) == 1 and stopping[0] < 0.9
    assert not worker.pubsub_thread.is_alive()
    wait_until(
        lambda: not [t for t in threading.enumerate() if t.name == "leadpulse-job-watchdog"],
        timeout=2,
        message="the job watchdog to end with its worker",
    )
