"""The faults, each injected into a running stack the way it happens in production; each returns the moment to
time recovery from (the death, or the server back up)."""

from __future__ import annotations

import inspect
import time
from datetime import datetime

from integrations.slack import SlackAdapter
from tests.conftest import wait_until
from tests.faults.oracle import message_keys, now

POST = "/api/chat.postMessage"
REDIS_OUTAGE_SECONDS = 3
SLACK_CLIENT_TIMEOUT = inspect.signature(SlackAdapter).parameters["timeout"].default  # a slower answer is no answer


def kill_worker_mid_scoring(stack, timeout: float = 60) -> datetime:
    """kill -9 a worker (and every process it started) in the middle of a scoring batch, as PostgreSQL sees it: the
    batch is seen again just before the kill, so the worker is still in it when it dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for port in sorted(stack.store.scoring_ports()):
            victim = stack.deployment.worker_on_port(port)
            if victim is not None and port in stack.store.scoring_ports():
                stack.deployment.kill_worker(victim)
                return now()
        time.sleep(0.005)  # polling PostgreSQL for a batch to begin
    raise AssertionError(f"no worker was seen in the middle of a scoring batch within {timeout} s")


def kill_random_worker(stack) -> datetime:
    """kill -9 whichever worker, whatever it is doing: a random point."""
    stack.deployment.kill_worker(stack.rng.choice(stack.deployment.workers))
    return now()


def replace_killed_worker(stack, wait: bool = True) -> None:
    """What a supervisor does after a death: start another (after the clock: the survivors must cope alone)."""
    started = stack.deployment.start_worker()
    if wait:
        stack.deployment.wait_registered([started])


def kill_worker_mid_slack_post(stack, flush_redis: bool) -> tuple[datetime, str]:
    """Slack takes the next post but holds its answer; the worker waiting for it is killed -9, and with flush_redis
    Redis then loses every key (the posting marker among them). Returns the death and the held message's key."""
    stack.slack.slow_next(1, seconds=120, path=POST)  # the answer goes to a dead socket, if at all
    waiting: list = []

    def held() -> bool:  # a post Slack made and has not answered, whose worker still waits for the answer
        with stack.slack.lock:
            unanswered = [r for r in stack.slack.requests_to(POST) if r.status is None]
            key = message_keys(stack.slack)[-1] if unanswered else None  # one delivery per OU at a time: the newest
        owners = [stack.deployment.worker_on_port(r.client_port) for r in unanswered]
        waiting[:] = [(owner, key) for owner in owners if owner is not None]
        return bool(waiting)

    wait_until(held, timeout=120, interval=0.02, message="a worker waiting for Slack's answer to a post")
    victim, key = waiting[0]
    stack.deployment.kill_worker(victim)
    died = now()
    if flush_redis:
        stack.redis.flushall()
    return died, key


def slow_slack_post(stack) -> None:
    """Slack takes the next post but answers after the client gave up: did it go out? (It did.)"""
    stack.slack.slow_next(1, seconds=SLACK_CLIENT_TIMEOUT + 2, path=POST)


def failing_slack(stack, posts: int = 1) -> None:
    """The next posts fail with a 503 before reaching the channel."""
    stack.slack.fail_next(posts, 503, path=POST)


def flush_redis(stack) -> datetime:
    """Every job, wake-up, lock and marker gone at once."""
    stack.redis.flushall()
    return now()


def restart_redis(stack) -> datetime:
    """kill -9 while a worker is mid-job, stay down a few seconds (a restart, a failover), start again empty (no
    persistence): every client's connection breaks, and calls made meanwhile fail."""
    wait_until(
        lambda: any(stack.deployment.worker_on_port(port) for port in stack.store.scoring_ports()),
        timeout=60,
        interval=0.005,
        message="a worker in the middle of a scoring batch",
    )
    stack.redis.kill()
    time.sleep(REDIS_OUTAGE_SECONDS)  # the fault's length, not a wait for anything
    stack.redis.start()
    return now()


def restart_postgres(stack, load, crash: bool) -> datetime:
    """Crash (stop -m immediate) or stop (-m fast) PostgreSQL under load, and start it once the client felt it."""
    failures = load.stats.retries
    stack.pg.crash() if crash else stack.pg.stop()
    wait_until(
        lambda: load.stats.retries > failures or load.done(), timeout=60, message="the client to notice the outage"
    )
    stack.pg.start()
    return now()


def kill_web_workers(stack, count: int) -> None:
    """kill -9 `count` of gunicorn's workers mid-request; the master forks new ones."""
    before = stack.deployment.web_workers()
    victims = stack.rng.sample(before, min(count, len(before)))
    for pid in victims:
        stack.deployment.kill_web_worker(pid)
    stack.deployment.wait_web_workers(len(before), not_in=set(victims))
