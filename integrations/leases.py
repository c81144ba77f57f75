"""Redis locks that die with their holder: a short TTL that a thread of the holding process renews while it works.

Why a lease and not a long TTL or a PostgreSQL session lock: a lock whose TTL had to outlive the longest job kept a
dead worker's slot for minutes, and an advisory lock on the holder's database session frees at once but is invisible
to the kick that must not enqueue a second job while one runs (the web's after-commit kick reads one Redis key). A
lease is both: the kick sees it in Redis, and a holder killed with -9 stops renewing it, so it lapses within
LEASE_TTL seconds and the next kick or sweep takes over. Correctness never rests on it: scoring row-locks its leads
and an alert row is locked while it is posted, so two holders after a lapse (a holder stalled longer than the TTL,
or Redis flushed) do duplicate work, never a duplicate effect.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from redis.exceptions import RedisError

log = logging.getLogger("leadpulse.leases")

LEASE_TTL = 8.0  # seconds a lease outlives its holder's last renewal: a dead holder is known within this
RENEW_EVERY = LEASE_TTL / 4  # a holder's thread may stall three renewals before the lease lapses

# Take the key when it is free or holds a value starting with `placeholder` (a kick's "queued:<job>" mark); 1 when taken.
_TAKE = """
local v = redis.call('get', KEYS[1])
if v == false or (ARGV[3] ~= '' and string.sub(v, 1, #ARGV[3]) == ARGV[3]) then
  redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# Extend our lease; take it back if Redis lost it (restarted empty, flushed); 0 when another holder has it.
_RENEW = """
local v = redis.call('get', KEYS[1])
if v == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
if v == false then redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class Lease:
    """One lock key held by this process while `held`; release it in a finally (a dead holder's lapses by itself)."""

    def __init__(self, redis, key: str, ttl: float = LEASE_TTL):
        self.redis, self.key, self.ttl_ms = redis, key, int(ttl * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"  # who holds it, for an operator
        self.held = False
        self._lock = threading.Lock()  # a renewal never races a release (it would take the freed key back)

    def acquire(self, placeholder: str = "") -> bool:
        """Take the key if it is free (or holds a value starting with the placeholder); renewed from now on until
        release."""
        self.held = bool(self.redis.eval(_TAKE, 1, self.key, self.token, self.ttl_ms, placeholder))
        if self.held:
            _keeper.add(self)
        return self.held

    def renew(self) -> bool:
        """Extend the lease now; False once another holder took it. The keeper thread calls it every RENEW_EVERY s; a
        job calls it before each call out, so a stall past the TTL (the keeper stalled too) is noticed before it acts.
        With Redis away it answers as before (the job notices the outage itself)."""
        with self._lock:
            if not self.held:
                return False
            try:
                if not self.redis.eval(_RENEW, 1, self.key, self.token, self.ttl_ms):
                    log.warning("lease %s was taken over (this holder stalled past its TTL?)", self.key)
                    self.held = False
            except RedisError as exc:  # Redis away: try again at the next renewal; the job notices the outage itself
                log.warning("could not renew lease %s: %s", self.key, exc.__class__.__name__)
        if not self.held:
            _keeper.remove(self)
        return self.held

    def release(self) -> None:
        """Free the key if still ours. Best effort: with Redis away the lease lapses by itself within its TTL."""
        _keeper.remove(self)
        with self._lock:
            if not self.held:
                return
            self.held = False
            try:
                self.redis.eval(_RELEASE, 1, self.key, self.token)
            except RedisError as exc:
                log.warning("could not release lease %s (%s); it lapses by itself", self.key, exc.__class__.__name__)


class _Keeper:
    """One daemon thread per process renews every lease the process holds."""

    def __init__(self):
        self._lock = threading.Lock()
        self._leases: dict[int, Lease] = {}
        self._pid: int | None = None  # the thread's process: a forked child starts its own

    def add(self, lease: Lease) -> None:
        with self._lock:
            self._leases[id(lease)] = lease
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="leadpulse-lease-keeper", daemon=True).start()

    def remove(self, lease: Lease) -> None:
        with self._lock:
            self._leases.pop(id(lease), None)

    def _run(self) -> None:
        while True:
            time.sleep(RENEW_EVERY)
            with self._lock:
                leases = list(self._leases.values())
            for lease in leases:
                lease.renew()


_keeper = _Keeper()
