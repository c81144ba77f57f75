"""Test fixtures on real PostgreSQL and Redis: a migrated database, a clean slate per test, real workers."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

import pytest
from sqlalchemy import create_engine, text


def xdist_worker_redis_url(url: str, worker: str | None) -> str:
    """Under pytest -n, worker gwN uses the Redis db N below the given one (15, 14, ... by default)."""
    from urllib.parse import urlsplit, urlunsplit

    if worker is None:
        return url
    parts = urlsplit(url)
    db = int(parts.path.strip("/") or 0) - int(worker.removeprefix("gw"))
    if db < 0:
        raise pytest.UsageError(
            f"TEST_REDIS_URL {url}: xdist worker {worker} would need Redis db {db}; "
            "give a higher db number or fewer workers"
        )
    return urlunsplit(parts._replace(path=f"/{db}"))


XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ... in a worker of pytest -n; unset otherwise
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TEST_DB = os.environ.get("TEST_PG_DB", "leadpulse_test") + (f"_{XDIST_WORKER}" if XDIST_WORKER else "")
TEST_DATABASE_URL = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + TEST_DB
TEST_REDIS_URL = xdist_worker_redis_url(os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"), XDIST_WORKER)

# Jobs and subprocess workers read their configuration from the environment, like production.
os.environ["DATABASE_URL"] = TEST_DATABASE_URL
os.environ["REDIS_URL"] = TEST_REDIS_URL
os.environ["LEADPULSE_QUEUE"] = "leadpulse-test"
os.environ.setdefault("LOG_LEVEL", "WARNING")
for _name in (  # the integration defaults a test wants, it sets itself
    "LEADPULSE_BOOTSTRAP",
    "HUBSPOT_ACCESS_TOKEN",
    "SLACK_BOT_TOKEN",
    "SLACK_ALERT_CHANNEL",
    "LEADPULSE_DEFAULT_INTEGRATION_UNITS",
):
    os.environ.pop(_name, None)

FAULTS_DIR = "tests/faults/"  # node ids under it run in one xdist worker (pytest_xdist_make_scheduler)


def pytest_xdist_make_scheduler(config, log):
    """pytest -n with the default distribution: the fault scenarios (tests/faults) go to one worker, one after another,
    on the one set of private servers it starts; every other test is handed out one at a time as xdist's `load` does.
    (xdist's own `loadgroup` cannot group on pytest >= 9: it renames items through an attribute pytest no longer
    reads.) The group is the largest unit, so it starts first and the other worker takes the rest meanwhile."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FaultsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return FAULTS_DIR if nodeid.startswith(FAULTS_DIR) else nodeid

    return FaultsTogether(config, log)


from config import Settings  # noqa: E402
from models.migrate import upgrade as db_upgrade  # noqa: E402
from webapp import create_app  # noqa: E402


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


def model_tables():
    """Every table the models declare, parents first; what a migration creates beyond them, test_clean_slate catches."""
    import models  # noqa: F401  (registers every table)
    from models.base import Base

    return Base.metadata.sorted_tables


@pytest.fixture(scope="session")
def wipe_statement(settings) -> str:
    """Empty every model table (children first) and restart their ids, as a fresh install. DELETE, not TRUNCATE: on
    a test's few rows it takes ~1 ms, where TRUNCATE's new files and their fsync took ~80 ms of every test."""
    from models.db import get_engine

    tables = model_tables()
    engine = get_engine(settings.database_url)
    quote = engine.dialect.identifier_preparer.format_table
    with engine.connect() as conn:
        sequences = (
            conn.execute(
                text(
                    "SELECT s.oid::regclass::text FROM pg_class s JOIN pg_depend d ON d.classid = 'pg_class'::regclass "
                    "AND d.objid = s.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') "
                    "JOIN pg_class t ON t.oid = d.refobjid WHERE s.relkind = 'S' AND t.relname = ANY(:tables)"
                ),
                {"tables": [t.name for t in tables]},
            )
            .scalars()
            .all()
        )
    return "; ".join(
        [f"DELETE FROM {quote(t)}" for t in reversed(tables)]
        + [f"SELECT setval('{seq}', 1, false)" for seq in sequences]
    )


@pytest.fixture
def clean(settings, redis_conn, wipe_statement):
    from models.db import get_engine

    with get_engine(settings.database_url).begin() as conn:
        conn.exec_driver_sql(wipe_statement)
    redis_conn.flushdb()
    yield


@pytest.fixture
def app(settings, clean):
    """The app, whose scoring wake-ups (sent after each 202) all land before the next test empties Redis."""
    app = create_app(settings)
    app.testing = True
    yield app
    app_state = app.extensions["leadpulse"]
    if "committer" in vars(app_state):
        app_state.committer.wait_woken()


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
    from models.accounts import bootstrap_tenant

    email = email or f"owner-{org.lower()}-{unit.lower()}@example.com"
    out = bootstrap_tenant(settings.database_url, org, unit, email, password)
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
def run_worker(settings, redis_conn, request):
    """Drain the queue with `leadpulse worker`'s own worker class (in-process, burst), once the test's app has woken
    scoring for every event it committed (the 202 does not wait for the wake-up)."""
    from rq import Queue

    from worker.process import WatchedWorker
    from worker.registry import worker_queues

    def run():
        if "app" in request.fixturenames:
            app_state = request.getfixturevalue("app").extensions["leadpulse"]
            if "committer" in vars(app_state):  # a cached_property: only an app that ingested has one
                assert app_state.committer.wait_woken(), "scoring was not woken within 10 s of a commit"
        queues = [Queue(name, connection=redis_conn) for name in worker_queues(settings.queue_name)]
        WatchedWorker(queues, connection=redis_conn).work(burst=True, logging_level="WARNING")

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
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "worker.cli", "worker"], env=full_env, stdout=log, stderr=subprocess.STDOUT
                )
            )
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
