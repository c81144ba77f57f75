"""Per-app runtime state: settings, session factory, Redis, and the lazily loaded secret key."""

from __future__ import annotations

import threading
from functools import cached_property

from flask import current_app, g, has_request_context, request
from redis import BlockingConnectionPool, Redis

from config import Settings
from integrations.login_lockout import LoginLockout
from integrations.request_limits import RequestLimiter
from models.accounts import load_or_create_secret
from models.client_ids import id_key, legacy_ids_exist
from models.db import audit_sessions, committer_sessions, session_factory
from webapp.group_commit import GroupCommitter
from webapp.stream_hub import StreamHub
from worker.jobs import try_kick
from worker.stream import announce_events


class AppState:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.Session = session_factory(settings.database_url)
        self.WriterSession = session_factory(settings.database_url, writer=True)
        self._lock = threading.Lock()
        self._secret: str | None = settings.secret_key

    @cached_property
    def AuditSession(self):
        """Sessions on the audit log's own quick-to-give-up connections (webapp/services/audit_log.py)."""
        return audit_sessions(self.settings.database_url)

    @cached_property
    def redis(self):
        return Redis.from_url(self.settings.redis_url, socket_timeout=5, socket_connect_timeout=2)

    @cached_property
    def limiter(self):
        """Request limits, on a Redis client of their own: short timeouts bound what an outage adds to a request, and
        a bounded pool keeps a thousand concurrent requests of a gevent worker from opening a thousand connections."""
        pool = BlockingConnectionPool.from_url(
            self.settings.redis_url, max_connections=64, timeout=0.5, socket_timeout=0.5, socket_connect_timeout=0.5
        )
        return RequestLimiter(Redis(connection_pool=pool))

    @cached_property
    def lockout(self):
        """Failed sign-ins and the holds they earn (same Redis, clock and outage pause as the request limits)."""
        s = self.settings
        return LoginLockout(
            self.limiter, s.login_lockout_failures, s.login_lockout_email_failures, s.login_lockout_max_seconds
        )

    @cached_property
    def stream_hub(self):
        """This process's one subscription for GET /stream."""
        return StreamHub(self.redis)

    @cached_property
    def committer(self):
        """This process's group committer for ingest; after each commit it wakes scoring once."""
        return GroupCommitter(
            committer_sessions(self.settings.database_url),
            after_commit=lambda: try_kick(self),
            announce=lambda news: announce_events(self.redis, news),
        )

    @cached_property
    def client_id_key(self) -> bytes:
        """The key of the tags on the client ids this instance issues (models/client_ids.py)."""
        with self.WriterSession() as s, s.begin():
            return id_key(s)

    @cached_property
    def legacy_client_ids(self) -> bool:
        """Whether untagged client ids from before tags may still be in use (checked once: none are made now)."""
        with self.Session() as s:
            return legacy_ids_exist(s)

    @property
    def secret_key(self) -> str:
        """SECRET_KEY from the environment, else generated once and stored for every process."""
        if self._secret is None:
            with self._lock:
                if self._secret is None:
                    self._secret = load_or_create_secret(self.Session)
        return self._secret


def state() -> AppState:
    return current_app.extensions["leadpulse"]


def db():
    """The request's session, opened on first use and closed at teardown.

    A request that changes data begins as a writer: on SQLite it waits for the write lock up front
    instead of failing when a worker wrote between its reads and its writes (no-op on PostgreSQL).
    """
    if "db" not in g:
        writes = request.method not in ("GET", "HEAD", "OPTIONS") if has_request_context() else False
        g.db = (state().WriterSession if writes else state().Session)()
    return g.db


def close_db(_exc=None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()


def external_url(path: str) -> str:
    """An absolute URL (path as url_for gives it) as clients see it: LEADPULSE_PUBLIC_URL when set, else this host."""
    base = state().settings.public_url or request.host_url.rstrip("/")
    return base + path


def signed_request_url() -> str:
    """This request's URL as the sender signed it: public base, path, and the query string exactly as received."""
    query = request.query_string.decode("latin-1")
    return external_url(request.script_root + request.path) + (f"?{query}" if query else "")
