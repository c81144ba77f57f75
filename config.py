"""One Settings object, read from the environment (the names are a contract, listed in the README)."""

from __future__ import annotations

import os
import re
import uuid
from dataclasses import dataclass, field

ALL_UNITS = ("*",)  # LEADPULSE_DEFAULT_INTEGRATION_UNITS=*: the defaults serve every OU (a single-team install)


def _parsed(env: dict, name: str, default, parse, expected: str):
    """Read one variable with `parse`, failing loudly on garbage rather than running misconfigured."""
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return parse(raw)
    except ValueError:
        raise SystemExit(f"configuration error: {name} must be {expected}, got {raw!r}") from None


def _int(env: dict, name: str, default: int) -> int:
    return _parsed(env, name, default, int, "an integer")


def _count(env: dict, name: str, default: int) -> int:
    """A count that cannot be negative (0 where the default means 'derived')."""
    value = _int(env, name, default)
    if value < 0:
        raise SystemExit(f"configuration error: {name} must be 0 or more, got {value}")
    return value


def _positive_seconds(raw: str) -> float:
    value = float(raw)
    if not 0 < value < 86400:
        raise ValueError(raw)
    return value


def _seconds(env: dict, name: str, default: float) -> float:
    """A positive duration in seconds (fractions allowed); zero or garbage fails loudly: no read may go unbounded."""
    return _parsed(env, name, default, _positive_seconds, "a number of seconds above 0")


def _default_units(env: dict, name: str) -> tuple[str, ...] | None:
    """`*`, or OU and organization ids separated by commas; unset is None (the first organization's OUs). Names are
    refused: they are neither unique nor fixed, and a rename must never hand the operator's tokens to someone else."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return None
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if "*" in items:
        if len(items) > 1:
            raise SystemExit(f"configuration error: {name} is either * alone or a list of ids, got {raw!r}")
        return ALL_UNITS
    ids = []
    for item in items:
        try:
            ids.append(str(uuid.UUID(item)))
        except ValueError:
            raise SystemExit(
                f"configuration error: {name}: {item!r} is not an OU or organization id "
                "(ids only, comma-separated, or * for every OU)"
            ) from None
    return tuple(dict.fromkeys(ids))


ENVIRONMENTS = ("production", "development")


@dataclass(frozen=True)
class Rate:
    """A request allowance: `count` per `seconds`, all of which may come at once (a burst of `count`)."""

    count: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}s"


PERIODS = {
    **dict.fromkeys(("s", "sec", "second"), 1),
    **dict.fromkeys(("m", "min", "minute"), 60),
    **dict.fromkeys(("h", "hour"), 3600),
    **dict.fromkeys(("d", "day"), 86400),
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+?)s?\s*$")


def parse_rate(text: str) -> Rate:
    """'600/minute', '20/s', '1000/10s', '5/hour': COUNT/[N]PERIOD, PERIOD one of second, minute, hour, day."""
    match = _RATE.match(text.lower())
    if not match or match.group(3) not in PERIODS or int(match.group(1)) < 1 or int(match.group(2) or 1) < 1:
        raise ValueError(f"{text!r} is not a rate like 600/minute")
    return Rate(int(match.group(1)), int(match.group(2) or 1) * PERIODS[match.group(3)])


def _rate(env: dict, name: str, default: Rate) -> Rate:
    return _parsed(env, name, default, parse_rate, "a rate like 600/minute")


RATE_LIMIT_MODES = ("enforce", "observe", "off")


def _choice(env: dict, name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or default).strip().lower()
    if raw not in choices:
        raise SystemExit(f"configuration error: {name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///leadpulse.db"
    redis_url: str = "redis://localhost:6379/0"
    secret_key: str | None = None
    hubspot_access_token: str | None = None
    hubspot_api_base: str = "https://api.hubapi.com"
    hubspot_rate_limit_per_10s: int = 100
    slack_bot_token: str | None = None
    slack_alert_channel: str | None = None
    slack_api_base: str = "https://slack.com/api/"
    bootstrap: str | None = None
    # OUs served by the HubSpot and Slack defaults above: None = the first organization's, ALL_UNITS = every OU,
    # else these OU and organization ids (models/integration_defaults.py)
    default_integration_units: tuple[str, ...] | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    web_workers: int = 2
    web_connections: int = 1000
    web_header_timeout: float = 10.0  # a request's head must have arrived this long after the server waits for it
    web_body_timeout: float = 30.0  # a request's body must have arrived this long after its head (plus MIN_RATE time)
    web_slow_clients: int = 0  # connections per process waiting on a client's bytes at once; 0: half the capacity
    environment: str = "production"  # development drops HSTS and the Secure cookie flag (plain http on localhost)
    queue_name: str = "leadpulse"
    score_batch_size: int = 2000
    scoring_parallelism: int = 2
    sweep_interval_seconds: int = 30
    decay_seconds: int = 300  # how often a worker's sweep enqueues a decay pass (periods apply this much late at most)
    job_grace_seconds: int = 30
    max_metadata_bytes: int = 100 * 1024
    import_max_bytes: int = 10 * 1024 * 1024
    metrics_token: str | None = None  # lets a scraper on another host read /metrics (Bearer); loopback needs none
    token_minutes: int = 60  # a member's login lasts this long (logout, or removal, ends it sooner)
    public_url: str | None = None  # how clients reach us (behind a proxy); links and signed URLs are built on it
    log_level: str = "INFO"
    audit_log_retention_days: int = 90  # 0 keeps the audit log forever
    # Request limits (docs/rate-limits.md): enforce refuses with 429, observe only counts and logs, off skips Redis.
    rate_limit_mode: str = "enforce"
    rate_limit_address: Rate = Rate(12000, 60)  # every request of one source address, before credentials are checked
    rate_limit_ingest: Rate = Rate(12000, 60)  # ingest routes, per API credential or member
    rate_limit_api: Rate = Rate(1200, 60)  # every other authenticated route, per API credential or member
    rate_limit_webhook: Rate = Rate(6000, 60)  # deliveries per webhook source (Segment write key, signed source)
    rate_limit_login: Rate = Rate(10, 60)  # sign-in attempts per source address
    rate_limit_visitor: Rate = Rate(600, 60)  # a write key's requests from one address (it is public, in web pages)
    rate_limit_unit: Rate = Rate(120000, 60)  # events accepted per OU, from every caller and source together
    login_lockout_failures: int = 5  # failed sign-ins for one email from one address before it is held there
    login_lockout_email_failures: int = 50  # from all addresses, before new addresses are held for that email
    login_lockout_max_seconds: int = 900  # the longest a lockout lasts, however long an attack goes on
    trusted_proxies: int = 0  # proxies in front that append to X-Forwarded-For; 0: the peer address is the client
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> Settings:
        """Build settings from os.environ so every process (web, worker, CLI) agrees."""
        env = dict(os.environ if env is None else env)
        values = dict(
            database_url=env.get("DATABASE_URL") or cls.database_url,
            redis_url=env.get("REDIS_URL") or cls.redis_url,
            secret_key=env.get("SECRET_KEY") or None,
            hubspot_access_token=env.get("HUBSPOT_ACCESS_TOKEN") or None,
            hubspot_api_base=env.get("HUBSPOT_API_BASE") or cls.hubspot_api_base,
            hubspot_rate_limit_per_10s=_int(env, "HUBSPOT_RATE_LIMIT_PER_10S", cls.hubspot_rate_limit_per_10s),
            slack_bot_token=env.get("SLACK_BOT_TOKEN") or None,
            slack_alert_channel=env.get("SLACK_ALERT_CHANNEL") or None,
            slack_api_base=env.get("SLACK_API_BASE") or cls.slack_api_base,
            bootstrap=env.get("LEADPULSE_BOOTSTRAP") or None,
            default_integration_units=_default_units(env, "LEADPULSE_DEFAULT_INTEGRATION_UNITS"),
            host=env.get("HOST") or cls.host,
            port=_int(env, "PORT", cls.port),
            web_workers=_int(env, "WEB_CONCURRENCY", cls.web_workers),
            web_connections=_int(env, "WEB_CONNECTIONS", cls.web_connections),
            web_header_timeout=_seconds(env, "WEB_HEADER_TIMEOUT", cls.web_header_timeout),
            web_body_timeout=_seconds(env, "WEB_BODY_TIMEOUT", cls.web_body_timeout),
            web_slow_clients=_count(env, "WEB_SLOW_CLIENTS", cls.web_slow_clients),
            environment=_environment(env.get("LEADPULSE_ENV") or cls.environment),
            queue_name=env.get("LEADPULSE_QUEUE") or cls.queue_name,
            score_batch_size=_int(env, "LEADPULSE_SCORE_BATCH", cls.score_batch_size),
            scoring_parallelism=_int(env, "LEADPULSE_SCORING_PARALLELISM", cls.scoring_parallelism),
            sweep_interval_seconds=_int(env, "LEADPULSE_SWEEP_SECONDS", cls.sweep_interval_seconds),
            decay_seconds=_int(env, "LEADPULSE_DECAY_SECONDS", cls.decay_seconds),
            job_grace_seconds=_int(env, "LEADPULSE_JOB_GRACE_SECONDS", cls.job_grace_seconds),
            import_max_bytes=_int(env, "LEADPULSE_IMPORT_MAX_MB", 10) * 1024 * 1024,
            metrics_token=env.get("LEADPULSE_METRICS_TOKEN") or None,
            token_minutes=_int(env, "LEADPULSE_TOKEN_MINUTES", cls.token_minutes),
            public_url=(env.get("LEADPULSE_PUBLIC_URL") or "").rstrip("/") or None,
            log_level=env.get("LOG_LEVEL") or cls.log_level,
            audit_log_retention_days=_int(env, "AUDIT_LOG_RETENTION_DAYS", cls.audit_log_retention_days),
            rate_limit_mode=_choice(env, "LEADPULSE_RATE_LIMIT_MODE", cls.rate_limit_mode, RATE_LIMIT_MODES),
            rate_limit_address=_rate(env, "LEADPULSE_RATE_LIMIT_ADDRESS", cls.rate_limit_address),
            rate_limit_ingest=_rate(env, "LEADPULSE_RATE_LIMIT_INGEST", cls.rate_limit_ingest),
            rate_limit_api=_rate(env, "LEADPULSE_RATE_LIMIT_API", cls.rate_limit_api),
            rate_limit_webhook=_rate(env, "LEADPULSE_RATE_LIMIT_WEBHOOK", cls.rate_limit_webhook),
            rate_limit_login=_rate(env, "LEADPULSE_RATE_LIMIT_LOGIN", cls.rate_limit_login),
            rate_limit_visitor=_rate(env, "LEADPULSE_RATE_LIMIT_VISITOR", cls.rate_limit_visitor),
            rate_limit_unit=_rate(env, "LEADPULSE_RATE_LIMIT_UNIT", cls.rate_limit_unit),
            login_lockout_failures=_int(env, "LEADPULSE_LOGIN_LOCKOUT_FAILURES", cls.login_lockout_failures),
            login_lockout_email_failures=_int(
                env, "LEADPULSE_LOGIN_LOCKOUT_EMAIL_FAILURES", cls.login_lockout_email_failures
            ),
            login_lockout_max_seconds=_int(env, "LEADPULSE_LOGIN_LOCKOUT_MAX_SECONDS", cls.login_lockout_max_seconds),
            trusted_proxies=_int(env, "LEADPULSE_TRUSTED_PROXIES", cls.trusted_proxies),
        )
        values.update(overrides)
        return cls(**values)

    @property
    def development(self) -> bool:
        return self.environment == "development"


def _environment(raw: str) -> str:
    if raw not in ENVIRONMENTS:
        raise SystemExit(f"configuration error: LEADPULSE_ENV must be one of {', '.join(ENVIRONMENTS)}, got {raw!r}")
    return raw
