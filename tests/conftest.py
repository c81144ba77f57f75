"""Test fixtures on real PostgreSQL and Redis: a migrated database, a clean slate per test, real workers."""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text

PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TEST_DB = os.environ.get("TEST_PG_DB", "leadpulse_test")
TEST_DATABASE_URL = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + TEST_DB
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

# Jobs and subprocess workers read their configuration from the environment, like production.
os.environ["DATABASE_URL"] = TEST_DATABASE_URL
os.environ["REDIS_URL"] = TEST_REDIS_URL
os.environ["LEADPULSE_QUEUE"] = "leadpulse-test"
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ.pop("LEADPULSE_BOOTSTRAP", None)

from config import Settings  # noqa: E402
from webapp import create_app  # noqa: E402
from webapp.cli import db_upgrade  # noqa: E402


def _create_database() -> None:
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{TEST_DB}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def settings() -> Settings:
    _create_database()
    s = Settings.from_env()
    db_upgrade(s)
    return s


@pytest.fixture(scope="session", autouse=True)
def responses_match_openapi():
    """Every test client records what the app answers; at the end (in each xdist worker) all of it must be documented."""
    from flask import Flask

    from tests.openapi_check import SEEN, DocumentedClient

    previous, Flask.test_client_class = Flask.test_client_class, DocumentedClient
    yield
    Flask.test_client_class = previous
    problems = SEEN.problems()
    assert not problems, "responses the OpenAPI document does not declare:\n" + "\n".join(problems)


@pytest.fixture(scope="session")
def redis_conn():
    from redis import Redis

    r = Redis.from_url(TEST_REDIS_URL)
    r.ping()
    return r


TABLES = (
    "hubspot_webhook_events, lead_deletions, webhook_sources, seed_records, slack_alerts, slack_install_requests, slack_connections, slack_oauth_states, slack_bots, slack_installations, "
    "alert_settings, slack_apps, hubspot_contacts, hubspot_connections, lead_level_changes, score_deltas, lead_scores, events, lead_aliases, leads, rules, rulesets, "
    "level_history, engagement_levels, api_credentials, memberships, members, org_units, organizations"
)


@pytest.fixture
def clean(settings, redis_conn):
    from models.db import get_engine

    with get_engine(settings.database_url).begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    redis_conn.flushdb()
    yield


@pytest.fixture
def app(settings, clean):
    app = create_app(settings)
    app.testing = True
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def basic(client_id: str, secret: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@dataclass
class Tenant:
    org_id: str
    unit_id: str
    client_id: str
    client_secret: str
    email: str
    password: str

    @property
    def auth(self) -> dict:
        return basic(self.client_id, self.client_secret)


def make_tenant(settings, org="Acme", unit="Main", email=None, password="correct horse battery") -> Tenant:
    from webapp.cli import run_bootstrap

    email = email or f"owner-{org.lower()}-{unit.lower()}@example.com"
    out = run_bootstrap(settings, org, unit, email, password)
    return Tenant(out["org_id"], out["unit_id"], out["client_id"], out["client_secret"], email, password)


@pytest.fixture
def tenant(settings, clean) -> Tenant:
    return make_tenant(settings)


@pytest.fixture
def other_tenant(settings, clean) -> Tenant:
    return make_tenant(settings, org="Globex", unit="East")


class Api:
    """A test client that authenticates as one tenant's API credential."""

    def __init__(self, client, tenant: Tenant):
        self.client, self.tenant = client, tenant

    def __getattr__(self, method):
        def call(path, **kw):
            headers = {**self.tenant.auth, **kw.pop("headers", {})}
            return getattr(self.client, method)(path, headers=headers, **kw)

        return call


@pytest.fixture
def api(client, tenant) -> Api:
    return Api(client, tenant)


@pytest.fixture
def run_worker(settings, redis_conn):
    """Drain the queue with a real RQ worker (in-process, burst), as `leadpulse worker` would."""
    from rq import Queue, SimpleWorker

    def run():
        from worker.wakeup import worker_queues

        queues = [Queue(name, connection=redis_conn) for name in worker_queues(settings.queue_name)]
        SimpleWorker(queues, connection=redis_conn).work(burst=True, logging_level="WARNING")

    return run


def wait_until(predicate, timeout: float = 60.0, interval: float = 0.05, message: str = "condition"):
    """Poll a condition until it holds (no fixed sleeps); fail with the message on timeout."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture
def worker_processes(settings, tmp_path):
    """Start real `leadpulse worker` processes; they are stopped (SIGTERM, warm shutdown) at teardown.

    Their output goes to files (a pipe nobody reads would fill and stall them); see worker-N.log on failure.
    """
    import subprocess
    import sys

    procs = []

    def start(count: int = 1, **env):
        full_env = {**os.environ, "LEADPULSE_SWEEP_SECONDS": "1", **{k: str(v) for k, v in env.items()}}
        for _ in range(count):
            log = open(tmp_path / f"worker-{len(procs)}.log", "wb")
            procs.append(subprocess.Popen([sys.executable, "-m", "webapp.cli", "worker"], env=full_env,
                                          stdout=log, stderr=subprocess.STDOUT))
            log.close()
        return procs

    yield start
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
