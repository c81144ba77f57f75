"""A rolling-window call limiter in Redis, shared by every worker that talks to the same HubSpot account."""

from __future__ import annotations

import time
import uuid


class RateLimited(Exception):
    """No call slot now; `wait` seconds until one frees up (reschedule, do not sleep in the worker)."""

    def __init__(self, wait: float):
        super().__init__(f"rate limited for {wait:.2f}s")
        self.wait = wait


class RollingLimiter:
    def __init__(self, redis, key: str, limit: int, window: float = 10.0):
        self.redis, self.key, self.limit, self.window = redis, key, limit, window

    def acquire(self, calls: int = 1) -> None:
        """Take `calls` slots in the last `window` seconds (all or none), or raise RateLimited with the wait.

        More calls than the limit take the whole window (a series the limit can never hold at once would wait forever).
        """
        calls = min(calls, self.limit)
        now = time.time()
        tag = uuid.uuid4().hex[:8]
        members = {f"{now:.6f}:{tag}:{i}": now for i in range(calls)}
        pipe = self.redis.pipeline(transaction=True)
        pipe.zremrangebyscore(self.key, 0, now - self.window)
        pipe.zadd(self.key, members)
        pipe.zcard(self.key)
        pipe.expire(self.key, int(self.window * 2) + 1)
        count = pipe.execute()[2]
        if count <= self.limit:
            return
        self.redis.zrem(self.key, *members)
        # Enough slots are free once the (count - limit)-th oldest of the others leaves the window.
        freeing = self.redis.zrange(self.key, count - self.limit - 1, count - self.limit - 1, withscores=True)
        wait = (freeing[0][1] + self.window - now) if freeing else self.window
        raise RateLimited(max(wait, 0.05))
