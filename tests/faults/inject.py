"""The faults, each injected into a running stack the way it happens in production; each returns the moment to
time recovery from (the death, or the server back up)."""

from __future__ import annotations

import inspect
import signal
import time
from datetime import datetime

from integrations.slack import SlackAdapter
from tests.conftest import wait_until
from tests.faults.oracle import message_keys, now

POST = "/api/chat.postMessage"
REDIS_OUTAGE_SECONDS = 3
SLACK_CLIENT_TIMEOUT = inspect.signature(SlackAdapter).parameters["timeout"].default  # a slower answer is no answer


def kill_worker_mid_scoring(stack, timeout: float = 60) -> datetime:
    """kill -9 a worker (and every process it started) in the middle of a scoring batch. A worker PostgreSQL shows in a
    batch is frozen (SIGSTOP) first: once its statement in flight is done it can send nothing more, its commit least of
    all, so a batch still open then dies with it. A batch that committed meanwhile lets the worker go on (SIGCONT)."""
    deadline = time.monotonic() + timeout
    with stack.store.batch_watch() as batches:
        while time.monotonic() < deadline:
            for batch in batches():
                victim = stack.deployment.worker(batch.worker_pid)
                if victim is None:  # a worker killed before, its server process not gone yet
                    continue
                victim.signal_group(signal.SIGSTOP)
                try:
                    if _still_open(batches, batch):
                        stack.deployment.kill_worker(victim)
                        return now()
                finally:
                    victim.signal_group(signal.SIGCONT)  # nothing once killed
            time.sleep(0.005)  # polling PostgreSQL for a batch to begin
    raise AssertionError(
        f"no worker was caught in the middle of a scoring batch within {timeout} s "
        f"(live workers: {[p.pid for p in stack.deployment.workers if p.alive()]}, "
        f"the client accepted {stack.loads[-1].accepted_count() if stack.loads else 0} events)"
    )


def _still_open(batches, batch, settle: float = 2.0) -> bool:
    """With its worker frozen: the batch's transaction is still open and waits for the worker, not running a statement
    (which may be its COMMIT), and not about to (the worker's last bytes had time to reach the server)."""
    time.sleep(0.02)
    until = time.monotonic() + settle
    while time.monotonic() < until:
        seen = next((b for b in batches() if b.backend_pid == batch.backend_pid), None)
        if seen is None or seen.xact_start != batch.xact_start:
            return False  # committed before the freeze
        if seen.state == "idle in transaction":
            return True
        time.sleep(0.002)  # a statement in flight: it ends by itself, and nothing follows it
    return False


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
    with stack.store.batch_watch() as batches:
        wait_until(
            lambda: any(stack.deployment.worker(batch.worker_pid) for batch in batches()),
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
