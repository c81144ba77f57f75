"""Real worker processes killed mid-job, and Redis killed and restarted empty under a busy worker: the work resumes on
its own within the promised time, and nothing is scored or posted twice."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import Counter

import pytest
from redis import Redis
from rq import Worker
from rq.scheduler import RQScheduler
from sqlalchemy import select

from integrations.redis_keys import SCORE_SLOT, UNIT_RUN
from models.events import PENDING, Event
from models.slack import SlackAlert
from tests.conftest import wait_until
from tests.fakes import FakeSlack
from tests.helpers import create_levels, ingest, leads_by_id, published_ruleset
from worker.registry import worker_queues

SCORING_RESUMES_WITHIN = 15  # seconds from a scoring worker's death
ALERTS_RESUME_WITHIN = 30  # seconds from the death of a worker posting an alert


def pending(app) -> int:
    with app.extensions["leadpulse"].Session() as s:
        return len(s.execute(select(Event.id).where(Event.status == PENDING)).all())


def send_page_views(api, count: int, leads: int) -> Counter:
    """count page views over `leads` leads, 500 to a request; returns how many each lead got."""
    sent = Counter(f"lead-{i % leads}" for i in range(count))
    events = [{"lead_id": f"lead-{i % leads}", "event_type": "page_view"} for i in range(count)]
    for start in range(0, count, 500):
        r = api.post("/ingest/batch", json={"events": events[start : start + 500]})
        assert r.status_code == 202, r.json
    return sent


def holder_pid(redis, key: str) -> int | None:
    """The process holding a lease (its token is host:pid:nonce); None while the key is free or only queued."""
    value = redis.get(key)
    parts = value.decode().split(":") if value else []
    return int(parts[1]) if len(parts) == 3 else None


def kill_worker(proc: subprocess.Popen) -> float:
    """kill -9 a `leadpulse worker` and the scheduler it forked, as a kill of its process group does; returns when it
    happened."""
    forked = children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    proc.wait()
    for pid in forked:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return killed_at


def children(pid: int) -> list[int]:
    return [int(child) for child in open(f"/proc/{pid}/task/{pid}/children").read().split()]


def gone(pid: int) -> bool:
    """Ended (a zombie not yet reaped by its new parent counts as ended)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_worker_killed_alone_takes_its_scheduler_with_it(settings, redis_conn, clean, worker_processes):
    """kill -9 of the worker's pid only (the OOM killer's, an operator's): the scheduler it forked notices it is
    orphaned, releases the scheduler locks and ends, instead of living on with them."""
    [proc] = worker_processes(1)
    locks = [RQScheduler.get_locking_key(name) for name in worker_queues(settings.queue_name)]
    wait_until(lambda: children(proc.pid) and redis_conn.exists(*locks) == 2, message="the worker's scheduler")
    [scheduler] = children(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_until(lambda: gone(scheduler), timeout=15, message="the orphaned scheduler to end")
    assert not redis_conn.exists(*locks)  # released: the next worker's scheduler starts at once


def test_a_killed_scorers_slot_is_taken_over_within_seconds(api, app, redis_conn, worker_processes):
    """The scoring slot's lease lapses seconds after its holder is killed -9; another worker takes the slot over."""
    published_ruleset(api, {"page_view": 2})
    sent = send_page_views(api, 600, 60)
    redis_conn.flushdb()  # the app's wake-ups were for its own slot count: the workers' sweep finds the events
    procs = worker_processes(2, LEADPULSE_SCORE_BATCH=10, LEADPULSE_SCORING_PARALLELISM=1)
    slot = SCORE_SLOT(slot=0)
    by_pid = {p.pid: p for p in procs}
    wait_until(
        lambda: holder_pid(redis_conn, slot) in by_pid and pending(app) < 560, timeout=60, message="a worker scoring"
    )
    victim = by_pid[holder_pid(redis_conn, slot)]
    [survivor] = [pid for pid in by_pid if pid != victim.pid]
    killed_at = kill_worker(victim)
    assert pending(app) > 0, "the worker finished before it was killed: give it more to do"
    wait_until(
        lambda: holder_pid(redis_conn, slot) == survivor or pending(app) == 0,
        timeout=SCORING_RESUMES_WITHIN + 5,
        message="the other worker to take the slot over",
    )
    assert time.monotonic() - killed_at < SCORING_RESUMES_WITHIN
    wait_until(lambda: pending(app) == 0, timeout=60, message="every event scored")
    assert {lead: v["score"] for lead, v in leads_by_id(api).items()} == {lead: 2 * n for lead, n in sent.items()}


@pytest.mark.parametrize("redis_flushed", [False, True], ids=["lease-lapses", "redis-flushed"])
def test_an_alert_in_flight_when_its_worker_is_killed_is_posted_exactly_once(
    api, app, settings, redis_conn, worker_processes, redis_flushed
):
    """Slack took the post, the worker died before the answer (and Redis may then lose everything): another worker
    finds the alert "posting" in the database, finds the message in the channel, and marks it sent: one message."""
    with FakeSlack(bot_token="xoxb-faults") as fake_slack:
        channel = fake_slack.add_channel("sales")
        create_levels(api)
        published_ruleset(api, {"demo_request": 30})
        fake_slack.slow_next(1, seconds=120, method="chat.postMessage")  # taken at once, answered after the test
        procs = worker_processes(
            2, SLACK_API_BASE=fake_slack.base_url, SLACK_BOT_TOKEN="xoxb-faults", SLACK_ALERT_CHANNEL=channel
        )
        ingest(api, "ada", "demo_request")
        ingest(api, "ada", "demo_request")  # 60: Hot
        fake_slack.wait_for(lambda: len(fake_slack.messages) == 1, timeout=60)
        lease = UNIT_RUN(kind="slack", unit_id=api.tenant.unit_id)
        [victim] = [p for p in procs if p.pid == holder_pid(redis_conn, lease)]
        killed_at = kill_worker(victim)
        if redis_flushed:
            redis_conn.flushdb()

        def alert() -> SlackAlert:
            with app.extensions["leadpulse"].Session() as s:
                return s.execute(select(SlackAlert)).scalar_one()

        assert alert().status == "posting"
        wait_until(lambda: alert().status == "sent", timeout=ALERTS_RESUME_WITHIN + 5, message="the alert settled")
        assert time.monotonic() - killed_at < ALERTS_RESUME_WITHIN
        [message] = fake_slack.messages
        assert (alert().ts, alert().attempts) == (message["ts"], 1)
        assert fake_slack.requests_to("/api/conversations.history"), "the survivor looked in the channel first"
        assert len(fake_slack.requests_to("/api/chat.postMessage")) == 1


class PrivateRedis:
    """A redis-server of the test's own on a free port, to kill -9 and start again (empty: nothing is saved)."""

    def __init__(self, workdir):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.workdir, self.proc = workdir, None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        self.proc = subprocess.Popen(
            ["redis-server", *args, "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = Redis.from_url(self.url, socket_connect_timeout=0.5)

        def up() -> bool:
            try:
                return client.ping()
            except Exception:
                return False

        wait_until(up, timeout=10, message="the private redis-server to answer")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


def test_a_busy_worker_rides_out_a_redis_restart_and_scores_everything_once(
    api, app, worker_processes, private_redis, tmp_path
):
    """Redis is killed under a scoring worker and comes back empty: the worker stays up, registers again and the
    sweep finds the events still pending in the database; every event counts once."""
    published_ruleset(api, {"page_view": 2})
    sent = send_page_views(api, 600, 60)
    [worker] = worker_processes(
        1, REDIS_URL=private_redis.url, LEADPULSE_SCORE_BATCH=10, LEADPULSE_SCORING_PARALLELISM=1
    )
    wait_until(lambda: pending(app) < 560, timeout=60, message="the worker scoring")
    private_redis.kill()
    log = tmp_path / "worker-0.log"
    wait_until(
        lambda: "Redis went away" in log.read_text() or worker.poll() is not None,
        timeout=30,
        message="the worker to meet the outage",
    )
    assert worker.poll() is None, log.read_text()[-3000:]
    assert pending(app) > 0, "the worker finished before Redis went away: give it more to do"
    private_redis.start()
    wait_until(lambda: pending(app) == 0, timeout=60, message="every event scored after Redis came back")
    assert worker.poll() is None, log.read_text()[-3000:]
    assert {lead: v["score"] for lead, v in leads_by_id(api).items()} == {lead: 2 * n for lead, n in sent.items()}
    assert "Redis is back" in log.read_text()
    assert [w.pid for w in Worker.all(connection=Redis.from_url(private_redis.url))] == [worker.pid]
