"""The shared HubSpot call limiter on real Redis: slots in a rolling window, several at once all or none."""

import pytest

from integrations.rate_limit import RateLimited, RollingLimiter


def test_several_slots_are_taken_all_or_none(redis_conn, clean):
    limiter = RollingLimiter(redis_conn, "leadpulse:test:rl", limit=5, window=10.0)
    limiter.acquire(3)
    with pytest.raises(RateLimited) as refused:
        limiter.acquire(3)  # only 2 left: nothing is taken
    assert 9.0 < refused.value.wait <= 10.0  # until the first slot of the three leaves the window
    limiter.acquire(2)
    with pytest.raises(RateLimited):
        limiter.acquire()
    assert redis_conn.zcard("leadpulse:test:rl") == 5


def test_more_calls_than_the_limit_take_the_whole_window(redis_conn, clean):
    limiter = RollingLimiter(redis_conn, "leadpulse:test:rl", limit=5, window=10.0)
    limiter.acquire(7)
    assert redis_conn.zcard("leadpulse:test:rl") == 5
    with pytest.raises(RateLimited):
        limiter.acquire()
