"""A kick's "queued" mark (a scoring slot's, an OU's Slack delivery's) lives while its job waits in the queue and
lapses within its TTL once the job is gone from there untaken, so a worker killed between taking the job and taking
the key over, or a kicker killed before its enqueue, holds the work up seconds, as a dead lease's holder does."""

import time

from rq import Queue

from integrations.redis_keys import SCORE_SLOT, SLACK_KICK
from tests.conftest import wait_until
from worker.jobs import kick_alerts, kick_scoring
from worker.registry import mark_queued, worker_queues
from worker.sweep import LAPSE_MARGIN, RECHECK_SECONDS, slot_lapse

UNIT = "ou-marks"


def queued_ids(redis, queue_name: str) -> list[str]:
    return [job_id for name in worker_queues(queue_name) for job_id in Queue(name, connection=redis).get_job_ids()]


def test_a_mark_is_renewed_while_its_job_waits_so_the_slot_gets_one_job(settings, redis_conn, clean):
    q = settings.queue_name
    assert kick_scoring(redis_conn, q, 2) == [0, 1] and kick_alerts(redis_conn, q, UNIT)
    waiting = queued_ids(redis_conn, q)
    assert len(waiting) == 3
    assert redis_conn.get(SCORE_SLOT(slot=0)).decode() == f"queued:{Queue(q, connection=redis_conn).get_job_ids()[0]}"
    until = time.monotonic() + SCORE_SLOT.ttl + 2  # past the marks' TTL: only the kicks' renewals keep them
    while time.monotonic() < until:
        assert kick_scoring(redis_conn, q, 2) == [] and not kick_alerts(redis_conn, q, UNIT)
        time.sleep(1)  # a kick a second, as commits and the sweep make them
    assert queued_ids(redis_conn, q) == waiting  # one job per slot and per OU, however many kicks


def test_a_mark_whose_job_left_the_queue_untaken_lapses_within_its_ttl(settings, redis_conn, clean):
    q = settings.queue_name
    kick_scoring(redis_conn, q, 2, only=[0])
    kick_alerts(redis_conn, q, UNIT)
    # A worker takes both jobs (urgent first, as RQ does) and dies before either takes its key over.
    for _ in range(2):
        assert Queue.dequeue_any(
            [Queue(n, connection=redis_conn) for n in worker_queues(q)], None, connection=redis_conn
        )
    # A kicker dies between marking slot 1 and enqueueing its job.
    assert mark_queued(redis_conn, Queue(q, connection=redis_conn), [SCORE_SLOT(slot=1)], SCORE_SLOT.ttl)[0]
    lost = time.monotonic()
    assert kick_scoring(redis_conn, q, 2) == [] and not kick_alerts(redis_conn, q, UNIT)  # not renewed, not free yet
    kicked: set = set()

    def kicked_again() -> bool:
        kicked.update(kick_scoring(redis_conn, q, 2))
        kicked.update(["slack"] if kick_alerts(redis_conn, q, UNIT) else [])
        return kicked == {0, 1, "slack"}

    wait_until(kicked_again, timeout=SCORE_SLOT.ttl + 2, interval=0.2, message="the lost marks to lapse")
    assert time.monotonic() - lost < max(SCORE_SLOT.ttl, SLACK_KICK.ttl) + 1
    assert len(queued_ids(redis_conn, q)) == 3


def test_the_sweep_looks_at_a_slot_as_its_key_lapses(redis_conn, clean):
    """Not up to RECHECK_SECONDS later: a dead holder's lease (or a lost job's mark) is kicked the moment it lapses,
    so scoring resumes within the key's TTL of a death; a live holder's key, renewed, never brings the look forward."""
    assert slot_lapse(redis_conn, 2) == RECHECK_SECONDS  # nothing held
    redis_conn.set(SCORE_SLOT(slot=0), "host:1:live", px=int(SCORE_SLOT.ttl * 1000))
    assert slot_lapse(redis_conn, 2) == RECHECK_SECONDS
    started = time.monotonic()
    redis_conn.set(SCORE_SLOT(slot=1), "host:2:dead", px=2500)  # its holder stopped renewing ~5 s ago
    lapse = slot_lapse(redis_conn, 2)
    assert 2.5 - (time.monotonic() - started) < lapse <= 2.5 + LAPSE_MARGIN < RECHECK_SECONDS
    redis_conn.set(SCORE_SLOT(slot=1), "host:2:dead", px=1)
    wait_until(lambda: not redis_conn.exists(SCORE_SLOT(slot=1)), timeout=1, interval=0.01)
    assert slot_lapse(redis_conn, 2) == RECHECK_SECONDS  # lapsed: the sweep kicks it in this round
