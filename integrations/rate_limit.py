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

    def acquire(self) -> None:
        """Take one call slot in the last `window` seconds, or raise RateLimited with the wait."""
        now = time.time()
        member = f"{now:.6f}:{uuid.uuid4().hex[:8]}"
        pipe = self.redis.pipeline(transaction=True)
        pipe.zremrangebyscore(self.key, 0, now - self.window)
        pipe.zadd(self.key, {member: now})
        pipe.zcard(self.key)
        pipe.expire(self.key, int(self.window * 2) + 1)
        count = pipe.execute()[2]
        if count <= self.limit:
            return
        self.redis.zrem(self.key, member)
        oldest = self.redis.zrange(self.key, 0, 0, withscores=True)
        wait = (oldest[0][1] + self.window - now) if oldest else self.window
        raise RateLimited(max(wait, 0.05))
