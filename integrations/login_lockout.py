"""Failed sign-ins and the holds they earn, in Redis so every web process agrees (docs/rate-limits.md, "Sign-in").

Failures are counted per email twice: from the attempt's address, and from every address. `failures` of them from
one address hold that address for that email (only there: whoever guesses locks out himself, not the member). A
guess spread over many addresses is caught by the second count: after `email_failures` every address is held for
that email except those a sign-in as it has succeeded from, so the member keeps signing in where they did before.
A hold lasts a minute, doubles with each further failure and never exceeds `max_seconds`; an attempt refused while
held is no failure and lengthens nothing. Everything is keyed by the email string, whether or not a member has it,
so a hold says nothing about which emails exist.
"""

from __future__ import annotations

import hashlib
import logging

from integrations import redis_keys as keys
from integrations.request_limits import LimitsUnavailable, RequestLimiter

log = logging.getLogger("leadpulse.login")

FIRST_HOLD_SECONDS = 60
KNOWN_SECONDS = keys.LOGIN_KNOWN.ttl  # how long a successful sign-in spares its address from the email-wide hold

# KEYS: failures and hold from this address, failures and hold from all, the address's success marker.
# ARGV: now (ms), threshold from this address, threshold from all, first hold (ms), longest hold (ms).
# Returns the ms to wait (0: go on). Past a threshold, once its hold has ended, the attempt takes the next hold at once
# (the one a failure would set), so attempts sent together when a hold ends get one try between them, not one each.
BEGIN = """
local now, first, longest = tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5])
local function hold(fails_key, hold_key, threshold)
  local fails = tonumber(redis.call('GET', fails_key) or '0')
  if threshold <= 0 or fails < threshold then return 0, nil end
  local held = tonumber(redis.call('GET', hold_key) or '0')
  if held > now then return held - now, nil end
  return 0, math.min(first * 2 ^ (fails + 1 - threshold), longest)
end
local pair_wait, pair_next = hold(KEYS[1], KEYS[2], tonumber(ARGV[2]))
local all_wait, all_next = 0, nil
if redis.call('EXISTS', KEYS[5]) == 0 then all_wait, all_next = hold(KEYS[3], KEYS[4], tonumber(ARGV[3])) end
local wait = math.max(pair_wait, all_wait)
if wait > 0 then return math.ceil(wait) end
if pair_next then redis.call('SET', KEYS[2], now + pair_next, 'PX', pair_next) end
if all_next then redis.call('SET', KEYS[4], now + all_next, 'PX', all_next) end
return 0
"""

# KEYS: failures and hold from this address, failures and hold from all. ARGV: now (ms), the two thresholds, first
# hold (ms), longest hold (ms), how long failures are remembered (s). Counts the failure; past a threshold, holds.
FAILED = """
local now, first, longest, forget = tonumber(ARGV[1]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local function fail(fails_key, hold_key, threshold)
  local fails = redis.call('INCR', fails_key)
  redis.call('EXPIRE', fails_key, forget)
  if threshold > 0 and fails >= threshold then
    local d = math.min(first * 2 ^ (fails - threshold), longest)
    redis.call('SET', hold_key, now + d, 'PX', d)
  end
end
fail(KEYS[1], KEYS[2], tonumber(ARGV[2]))
fail(KEYS[3], KEYS[4], tonumber(ARGV[3]))
return 0
"""


class LoginLockout:
    def __init__(self, limiter: RequestLimiter, failures: int, email_failures: int, max_seconds: int):
        self.limiter = limiter  # its Redis, its clock and its outage pause
        self.thresholds = (failures, email_failures)
        self.longest = max(1, max_seconds) * 1000
        self.first = min(FIRST_HOLD_SECONDS * 1000, self.longest)
        # Failures are forgotten an hour after the last one, and never before a hold could have grown to its cap.
        self.forget = max(keys.LOGIN_FAILURES.ttl, 4 * max_seconds)
        self._begin = limiter.redis.register_script(BEGIN)
        self._failed = limiter.redis.register_script(FAILED)

    def wait(self, email: str, address: str) -> float:
        """Seconds before this email may be tried from this address (0: now, and the try is taken).

        Raises LimitsUnavailable when Redis cannot say: the caller refuses rather than guess unguarded.
        """
        pair, alone = _who(email, address)
        ms = self.limiter.call(
            self._begin,
            keys=[*self._keys(pair, alone), keys.LOGIN_KNOWN(who=pair)],
            args=[self.limiter.now_ms(), *self.thresholds, self.first, self.longest],
        )
        return ms / 1000

    def failed(self, email: str, address: str) -> None:
        try:
            self.limiter.call(
                self._failed,
                keys=self._keys(*_who(email, address)),
                args=[self.limiter.now_ms(), *self.thresholds, self.first, self.longest, self.forget],
            )
        except LimitsUnavailable:  # the attempt was checked before Redis went; this one failure goes uncounted
            log.warning("a failed sign-in was not counted: Redis unavailable")

    def succeeded(self, email: str, address: str) -> None:
        """The address's own count and hold end; it is spared the email-wide hold from now on."""
        pair, _ = _who(email, address)
        try:
            pipe = self.limiter.redis.pipeline(transaction=False)
            pipe.delete(keys.LOGIN_FAILURES(who=pair), keys.LOGIN_LOCK(who=pair))
            pipe.set(keys.LOGIN_KNOWN(who=pair), 1, ex=KNOWN_SECONDS)
            pipe.execute()
        except Exception as exc:  # the member is signed in all the same
            log.warning("a sign-in was not remembered: Redis failed (%s)", exc.__class__.__name__)

    @staticmethod
    def _keys(pair: str, alone: str) -> list[str]:
        return [
            keys.LOGIN_FAILURES(who=pair),
            keys.LOGIN_LOCK(who=pair),
            keys.LOGIN_FAILURES(who=alone),
            keys.LOGIN_LOCK(who=alone),
        ]


def _who(email: str, address: str) -> tuple[str, str]:
    """(email from this address, email from anywhere) as key parts: the email hashed, never stored as written."""
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    return f"{digest}/{address}", digest
