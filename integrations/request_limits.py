"""Request limits every web process shares: one GCRA bucket per caller and limit in Redis, all the limits of a request
taken in one script call (one round trip), and open, refusing nothing, while Redis cannot answer (docs/rate-limits.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from redis.exceptions import RedisError

from config import Rate
from integrations import redis_keys as keys

log = logging.getLogger("leadpulse.limits")

OUTAGE_PAUSE = 5.0  # seconds the limiter leaves a Redis that failed alone: each ask could wait out a timeout

# GCRA (a leaky bucket kept as one number): a key holds the time, in ms, at which its caller's allowance is full again.
# A request of `cost` moves that time `cost` intervals on (interval = period / count) and is refused when that would
# put it more than `burst` intervals ahead of now. Every limit takes the request or none does. A key outlives its
# time by one period: expired or not, a time already past means a full allowance, and a clock a little ahead on
# another web process (or a test's) still finds it.
# KEYS: one per limit. ARGV: now (ms), cost, then per key its interval (ms) and burst.
# Returns the refusing limit's index (0: none) and its wait (ms), then per limit: requests left, ms until full again.
GCRA = """
local now, cost = tonumber(ARGV[1]), tonumber(ARGV[2])
local buckets, refused, wait = {}, 0, 0
for i = 1, #KEYS do
  local interval, burst = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local tat = math.max(tonumber(redis.call('GET', KEYS[i]) or now), now)
  local over = tat + interval * cost - interval * burst - now
  if over > wait then refused, wait = i, over end
  buckets[i] = {tat, interval, burst}
end
local out = {refused, math.ceil(wait)}
for i = 1, #KEYS do
  local tat, interval, burst = unpack(buckets[i])
  if refused == 0 and cost > 0 then
    tat = tat + interval * cost
    redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', math.ceil(tat - now + interval * burst))
  end
  out[#out + 1] = math.max(0, math.floor((now + interval * burst - tat) / interval))
  out[#out + 1] = math.ceil(tat - now)
end
return out
"""


class LimitsUnavailable(Exception):
    """Redis did not answer (or failed within the last OUTAGE_PAUSE seconds): what needs it must decide without it."""


@dataclass(frozen=True)
class Limit:
    """One allowance applied to one caller: `name` says which (api, ingest, address, ...), `caller` whose."""

    name: str
    caller: str
    rate: Rate


@dataclass(frozen=True)
class Standing:
    """Where a caller stands under one limit after a request: requests left now, seconds until the whole is back."""

    limit: Limit
    remaining: int
    reset: float


@dataclass(frozen=True)
class Decision:
    refused: Limit | None  # the limit that refused the request; None: every limit took it
    retry_after: float  # seconds until the refused request would be taken
    standings: tuple[Standing, ...]

    @property
    def allowed(self) -> bool:
        return self.refused is None

    def binding(self) -> Standing:
        """The standing a client should pace itself by: the refusing limit's, else the one with the least left."""
        if self.refused is not None:
            return next(s for s in self.standings if s.limit == self.refused)
        return min(self.standings, key=lambda s: s.remaining)


class RequestLimiter:
    def __init__(self, redis, clock=time.time):
        self.redis = redis
        self.clock = clock  # seconds; tests move it instead of waiting
        self._script = redis.register_script(GCRA)
        self._paused_until = 0.0

    def take(self, limits: Sequence[Limit], cost: int = 1) -> Decision | None:
        """Take `cost` requests from every limit, or none when one has too few left (cost 0 only reads them).

        None while Redis cannot answer: callers let the request through (fail open).
        """
        try:
            raw = self.call(
                self._script,
                keys=[keys.RATE(limit=limit.name, caller=limit.caller) for limit in limits],
                args=[self.now_ms(), cost]
                + [x for limit in limits for x in (limit.rate.seconds * 1000 / limit.rate.count, limit.rate.count)],
            )
        except LimitsUnavailable:
            return None
        refused = limits[raw[0] - 1] if raw[0] else None
        standings = tuple(
            Standing(limit, int(raw[2 + 2 * i]), int(raw[3 + 2 * i]) / 1000) for i, limit in enumerate(limits)
        )
        return Decision(refused, raw[1] / 1000, standings)

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def call(self, script, keys: list[str], args: list):
        """Run a script on this limiter's Redis, or raise LimitsUnavailable (and leave Redis alone a while)."""
        if time.monotonic() < self._paused_until:
            raise LimitsUnavailable()
        try:
            return script(keys=keys, args=args)
        except RedisError as exc:
            self.pause(exc)
            raise LimitsUnavailable() from exc

    def pause(self, exc: Exception) -> None:
        """A failed Redis is not asked again for OUTAGE_PAUSE s: an outage costs one timeout, not one per request."""
        self._paused_until = time.monotonic() + OUTAGE_PAUSE
        log.warning("request limits unchecked for %.0f s: Redis failed (%s)", OUTAGE_PAUSE, exc.__class__.__name__)


def seconds(value: float) -> int:
    """Whole seconds for Retry-After and RateLimit-Reset: rounded up, at least 1 (0 would invite a retry at once)."""
    return max(1, math.ceil(value))
