"""Every Redis key family LeadPulse writes, in one place, so nothing else spells a key by hand.

Redis carries wake-ups, locks, limits, markers and counters, never a promise: each of these may be lost and the
database still says what is left to do (docs/architecture.md, "The job registry"). The jobs that own each family
are declared in worker/jobs.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyFamily:
    """One family of keys: its pattern, why it exists and how long a key lives (None: until deleted or overwritten)."""

    pattern: str
    purpose: str
    ttl: int | None = None

    def __call__(self, **parts) -> str:
        return self.pattern.format(**parts)


# Scoring.
SCORE_SLOT = KeyFamily(
    "leadpulse:score:slot:{slot}",
    "one scoring job per lead partition: a kick marks it queued for its job (worker/registry.py mark_queued: kicks "
    "renew the mark while the job waits in the queue), the job that runs turns it into its lease "
    "(integrations/leases.py); either lapses within ttl seconds of a dead worker or kicker",
    8,
)

# Per-OU integration jobs (kind: hubspot or slack).
HUBSPOT_KICK = KeyFamily(
    "leadpulse:hubspot:kick:{unit_id}",
    "a contact sync was enqueued for the OU in the last 2 s (the job coalesces the rest)",
    2,
)
SLACK_KICK = KeyFamily(
    "leadpulse:slack:kick:{unit_id}",
    "alert delivery is queued for the OU (a mark as SCORE_SLOT's, renewed by kicks while its job waits in the "
    "queue); the job clears it as it starts",
    8,
)
UNIT_WAIT = KeyFamily(
    "leadpulse:{kind}:wait:{unit_id}",
    "the OU's job waits out a rate limit, backoff or refused "
    "target: kicks hold off and the retry scheduled for the end of the wait runs it",
)
UNIT_RUN = KeyFamily(
    "leadpulse:{kind}:run:{unit_id}",
    "one job per OU and kind at a time: the running job's lease (integrations/leases.py), lapsing seconds after a "
    "dead holder",
)
HUBSPOT_OPTIONS_RETRY = KeyFamily(
    "leadpulse:hubspot:options:{unit_id}", "the sweep enqueued a stale options sync for the OU recently", 900
)

# HubSpot adapter state.
HUBSPOT_OPTIONS_LOCK = KeyFamily(
    "leadpulse:hubspot:options-lock:{account}",
    "engagement_level options are read, merged and written by one OU at a time per portal: the updater's lease "
    "(integrations/leases.py), renewed through the up-to-7 calls of ensure_properties, lapsing seconds after a dead "
    "holder",
)
HUBSPOT_RATE = KeyFamily(
    "leadpulse:hubspot:rl:{account}",
    "the rolling 10 s call window shared by every worker using one HubSpot token (a hash of it, never the token)",
    21,
)
HUBSPOT_HEALED = KeyFamily(
    "leadpulse:hubspot:healed:{unit_id}",
    "the OU's refused level options were restored within the hour (at most once an hour per OU)",
    3600,
)
HUBSPOT_PROPS = KeyFamily("leadpulse:hubspot:props:{digest}", "the properties exist with this level table", 86400)
HUBSPOT_BUDGET = KeyFamily(
    "leadpulse:hubspot:failures:{unit_id}:{batch}",
    "consecutive 5xx for the OU's current batch of contacts, or of waiting creations (each its own count)",
    86400,
)

# Request limits and sign-in lockouts (integrations/request_limits.py, integrations/login_lockout.py).
RATE = KeyFamily(
    "leadpulse:rate:{limit}:{caller}",
    "when one caller's allowance under one limit is full again (GCRA arrival time, ms); lapses a period later",
)
LOGIN_FAILURES = KeyFamily(
    "leadpulse:login:failures:{who}",
    "failed sign-ins of an email (who: a hash of it) or of an email from one address (hash/address); "
    "forgotten this long after the last one (at least 4 lockout caps)",
    3600,
)
LOGIN_LOCK = KeyFamily(
    "leadpulse:login:lock:{who}", "until when sign-ins of `who` are held (ms); lapses when the hold ends"
)
LOGIN_KNOWN = KeyFamily(
    "leadpulse:login:known:{who}",
    "a sign-in as the email succeeded from this address (hash/address): the email-wide hold spares it",
    30 * 86400,
)

# The audit log's retention.
AUDIT_PRUNE = KeyFamily(
    "leadpulse:audit:prune",
    "a sweep enqueued the audit log's pruning within the hour (lost: the next sweep prunes again sooner, harmlessly)",
    3600,
)

# Decay.
DECAY_KICK = KeyFamily(
    "leadpulse:decay:kick",
    "a sweep enqueued a decay pass within LEADPULSE_DECAY_SECONDS (its ttl, set by the kick; lost: the next sweep "
    "enqueues one sooner, and a pass finds only what is due)",
)

# Counters every web process reports at /metrics.
METRICS = KeyFamily("leadpulse:metrics", "hash of scoring counters the workers add to")
SLACK_LATENCY = KeyFamily("leadpulse:metrics:event_to_slack", "event_to_slack_latency_seconds as a histogram hash")

# Pub/sub (a channel, not a key): GET /stream's news of one OU.
STREAM = KeyFamily("leadpulse:stream:{unit_id}", "pub/sub channel of an OU's new_event, score_update, level_change")

ALL = tuple(v for v in list(globals().values()) if isinstance(v, KeyFamily))
