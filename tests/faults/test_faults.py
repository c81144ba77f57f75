"""Faults against a running LeadPulse while an event source keeps sending: workers, web workers, Redis and PostgreSQL
killed or crashed, Slack failing or slow. Afterwards every accepted event is stored and scored exactly once, every
lead that reached Hot got exactly one Slack message, and the survivors took up a dead worker's scoring within 15 s
and its Slack delivery within 30 s. FAULTS_SCALE=long (`make test-faults`) runs 50,000 events through every fault
at random points; README "Fault suite" says more."""

from __future__ import annotations

import pytest

from tests.faults import inject
from tests.faults.oracle import message_keys


def test_workers_killed_mid_scoring(stack):
    """kill -9 of a worker while it scores: the survivor takes its slot over, and no event is lost or scored twice."""
    load = stack.load("score")
    for point in sorted(stack.rng.uniform(0.1, 0.6) for _ in range(stack.scale.worker_kills)):
        load.wait_accepted(point)
        died = inject.kill_worker_mid_scoring(stack)
        stack.clock("worker kill -9 mid-scoring", "scoring", died, load)
        inject.replace_killed_worker(stack, wait=False)  # the load goes on meanwhile: the next kill finds scoring
    stack.finish(load)


@pytest.mark.parametrize("redis_flushed", [False, True], ids=["redis-kept", "redis-flushed"])
def test_a_worker_killed_mid_slack_post(stack, redis_flushed):
    """Slack took the post but the worker died before it heard so (and Redis may then lose every key): the alert is
    marked sent within 30 s of the death, and its message is in the channel once, never twice."""
    load = stack.load("slack")
    died, held = inject.kill_worker_mid_slack_post(stack, flush_redis=redis_flushed)
    fault = "worker kill -9 mid-Slack-post" + (" + Redis flush" if redis_flushed else "")
    stack.clock(fault, "slack", died)
    stack.clock(fault, "scoring", died, load)
    stack.finish(load)
    assert message_keys(stack.slack).count(held) == 1


def test_redis_flushed_and_restarted(stack):
    """Redis loses every job, wake-up, lock and marker, then dies and comes back empty: the workers live through it,
    scoring resumes, and nothing accepted is lost (the database says what is left to do)."""
    load = stack.load("redis")
    load.wait_accepted(0.3)
    stack.clock("Redis FLUSHALL", "scoring", inject.flush_redis(stack), load)
    load.wait_accepted(0.6)
    stack.clock("Redis kill -9 and restart", "scoring", inject.restart_redis(stack), load)
    stack.finish(load)


def test_postgres_crashed_and_stopped(stack):
    """PostgreSQL crashes (immediate stop, WAL replay on start), later stops cleanly, under load: the client retries
    what got no 202, the web and the workers reconnect, and every accepted event is there, scored once."""
    load = stack.load("pg")
    load.wait_accepted(0.3)
    stack.clock("PostgreSQL crash and start", "scoring", inject.restart_postgres(stack, load, crash=True), load)
    load.wait_accepted(0.6)
    stack.clock("PostgreSQL fast stop and start", "scoring", inject.restart_postgres(stack, load, crash=False), load)
    stack.finish(load)


def test_web_workers_killed_mid_request(stack):
    """kill -9 of gunicorn workers mid-request, one after the other: a request that got no answer is sent again and
    is stored once (answered as a duplicate if its commit had made it)."""
    load = stack.load("web", threads=12)
    load.wait_accepted(0.3)
    inject.kill_web_workers(stack, 1)
    load.wait_accepted(0.6)
    inject.kill_web_workers(stack, 1)
    stack.finish(load)


def test_slack_failing_and_slow(stack):
    """Slack takes the first post but answers only after the client gave up, then answers a post 503: every alert
    still goes out once (the unanswered one is found in the channel, not posted again)."""
    inject.slow_slack_post(stack)
    inject.failing_slack(stack)
    load = stack.load("slackdown")
    stack.finish(load)
    assert [r.status for r in stack.slack.requests_to(inject.POST)][:2] == [200, 503]


def test_every_fault_at_random_points(stack):
    """The long run's core: one load, every kind of fault at random points (worker kills repeatedly)."""
    load = stack.load("chaos", events=stack.scale.chaos_events)
    schedule = list(stack.scale.chaos)
    stack.rng.shuffle(schedule)
    for point, fault in zip(sorted(stack.rng.uniform(0.05, 0.85) for _ in schedule), schedule):
        load.wait_accepted(point)
        if fault == "worker":
            died = inject.kill_random_worker(stack)
            stack.clock("worker kill -9 at a random point", "scoring", died, load)
            stack.clock("worker kill -9 at a random point", "slack", died)
            inject.replace_killed_worker(stack)
        elif fault == "worker-mid-post":
            died, _ = inject.kill_worker_mid_slack_post(stack, flush_redis=stack.rng.random() < 0.5)
            stack.clock("worker kill -9 mid-Slack-post", "slack", died)
            inject.replace_killed_worker(stack)
        elif fault == "redis-flush":
            stack.clock("Redis FLUSHALL", "scoring", inject.flush_redis(stack), load)
        elif fault == "redis-restart":
            stack.clock("Redis kill -9 and restart", "scoring", inject.restart_redis(stack), load)
        elif fault in ("pg-crash", "pg-stop"):
            back = inject.restart_postgres(stack, load, crash=fault == "pg-crash")
            stack.clock(f"PostgreSQL {fault[3:]} and start", "scoring", back, load)
        elif fault == "web-worker":
            inject.kill_web_workers(stack, 1)
        elif fault == "slack-failing":
            inject.failing_slack(stack, 2)
        elif fault == "slack-slow":
            inject.slow_slack_post(stack)
        else:
            raise AssertionError(f"unknown fault {fault}")
    stack.finish(load)
