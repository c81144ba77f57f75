"""Leases: held while the holder's thread renews them, taken back if Redis lost them, never released for another."""

import time

from integrations.leases import LEASE_TTL, Lease
from tests.conftest import wait_until

KEY = "test:lease"


def test_a_lease_is_renewed_while_held_and_freed_on_release(redis_conn, clean):
    lease = Lease(redis_conn, KEY)
    assert lease.acquire()
    taken = time.monotonic()
    assert not Lease(redis_conn, KEY).acquire()  # one holder at a time
    # Without renewals the TTL only falls; the keeper thread puts it back up within a renewal period.
    wait_until(
        lambda: redis_conn.pttl(KEY) > (LEASE_TTL - (time.monotonic() - taken)) * 1000 + 500,
        timeout=LEASE_TTL,
        message="a renewal",
    )
    assert redis_conn.get(KEY).decode() == lease.token
    lease.release()
    assert not redis_conn.exists(KEY) and not lease.held
    assert Lease(redis_conn, KEY).acquire()


def test_a_kicks_placeholder_is_taken_over_and_a_foreign_lease_is_not(redis_conn, clean):
    redis_conn.set(KEY, "queued:job-1")  # a kick's mark names its job; any job of the key may take it over
    assert not Lease(redis_conn, KEY).acquire()  # no placeholder named: the key is taken
    assert not Lease(redis_conn, KEY).acquire(placeholder="queued:job-1x")
    lease = Lease(redis_conn, KEY)
    assert lease.acquire(placeholder="queued:") and redis_conn.get(KEY).decode() == lease.token
    assert not Lease(redis_conn, KEY).acquire(placeholder="queued:")
    lease.release()


def test_a_lease_redis_lost_is_taken_back_and_one_taken_over_is_let_go(redis_conn, clean):
    lease = Lease(redis_conn, KEY)
    assert lease.acquire()
    redis_conn.flushdb()  # Redis restarted empty while the holder works: the next renewal takes the key back
    assert lease.renew()
    assert lease.held and redis_conn.get(KEY).decode() == lease.token
    redis_conn.set(KEY, "another-holder")  # the holder stalled past its TTL and another took over
    assert not lease.renew()  # what a job asks before it calls out
    assert not lease.held and not lease.renew()
    lease.release()
    assert redis_conn.get(KEY) == b"another-holder"  # never deletes a key that is not its own
