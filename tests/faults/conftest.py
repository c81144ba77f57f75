"""The fault suite's stack: a private PostgreSQL and Redis, fake Slack and HubSpot, `leadpulse web` and workers (one
set per test process, rebuilt after a failed scenario), a fresh OU with levels and a published ruleset per scenario;
and the scale it runs at (FAULTS_SCALE=short, the default, or long)."""

from __future__ import annotations

import faulthandler
import itertools
import os
import random
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from config import Settings
from models.accounts import bootstrap_tenant
from models.db import get_engine
from models.migrate import upgrade as db_upgrade
from tests.conftest import basic
from tests.fakes import FakeHubSpot, FakeSlack
from tests.faults import evidence
from tests.faults.load import WEIGHTS, EventLoad, HttpApi, Plan
from tests.faults.oracle import Outcome, Store, settle, verify
from tests.faults.processes import Deployment
from tests.faults.recovery import LIMITS, Overdue, Recovery, scoring_resumed, slack_resumed
from tests.faults.servers import HarnessError, PostgresCluster, RedisServer
from tests.helpers import create_levels, free_port, published_ruleset

BOT, HS_TOKEN = "xoxb-faults-bot", "pat-na1-faults"


@dataclass(frozen=True)
class Scale:
    name: str
    events: int  # per scenario
    leads: int
    rate: float  # events per second the client sends (the load spans the faults)
    workers: int  # `leadpulse worker` processes
    worker_kills: int  # kill -9 of a worker mid-scoring, in the scenario for it
    chaos_events: int  # the load of the run with every fault at random points
    chaos: tuple[str, ...]  # its faults (shuffled), see test_every_fault_at_random_points
    watch_beyond_limit: float  # a recovery clock gives up this long after its limit (long: the real figure)
    settle: float  # seconds the workers get to owe nothing once the load is in
    deadline: float  # seconds a scenario may take in all, whatever it waits for (see scenario_deadline)


EVERY_FAULT = (
    "worker-mid-post",
    "worker-mid-post",
    "redis-flush",
    "redis-restart",
    "pg-crash",
    "pg-stop",
    "web-worker",
    "web-worker",
    "slack-failing",
    "slack-slow",
)
SCALES = {
    "short": Scale(
        "short",
        events=1500,
        leads=150,
        rate=200,
        workers=2,
        worker_kills=2,
        chaos_events=1500,
        chaos=("worker", "redis-flush", "web-worker"),
        watch_beyond_limit=5,
        settle=60,
        deadline=600,
    ),
    "long": Scale(
        "long",
        events=10_000,
        leads=1000,
        rate=150,
        workers=3,
        worker_kills=4,
        chaos_events=50_000,
        chaos=("worker",) * 12 + EVERY_FAULT,
        watch_beyond_limit=400,
        settle=900,
        deadline=2 * 3600,
    ),
}
SCALE_NAME = os.environ.get("FAULTS_SCALE", "short")
if SCALE_NAME not in SCALES:
    raise pytest.UsageError(f"FAULTS_SCALE must be one of {sorted(SCALES)}, not {SCALE_NAME!r}")
SCALE = SCALES[SCALE_NAME]
# Short runs repeat the same random points (a steady suite); long runs pick new ones, printed to replay a failure.
SEED = int(os.environ.get("FAULTS_SEED") or (1 if SCALE_NAME == "short" else random.randrange(1_000_000)))


def leadpulse_env(settings_env: dict) -> dict:
    """Production's configuration pointed at the private servers and the fakes: no LeadPulse timing is tuned here,
    and none leaks in from the caller's environment."""
    kept = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LEADPULSE_", "SLACK_", "HUBSPOT_", "WEB_", "DATABASE_URL", "REDIS_URL", "SECRET_KEY"))
    }
    return {**kept, "HOST": "127.0.0.1", "LOG_LEVEL": "INFO", **settings_env}


class Services:
    """The servers, the fakes and LeadPulse's processes, shared by the scenarios of one test process."""

    def __init__(self, root) -> None:
        self.cleanup = ExitStack()
        try:
            self._start(root)
        except BaseException:
            self.cleanup.close()
            raise

    def _start(self, root) -> None:
        self.pg = PostgresCluster()
        self.cleanup.callback(self.pg.close)
        self.pg.start()
        self.redis = RedisServer()
        self.cleanup.callback(self.redis.close)
        self.redis.start()
        self.slack = FakeSlack(bot_token=BOT).start()
        self.cleanup.callback(self.slack.stop)
        self.channel = self.slack.add_channel("sales")
        self.hubspot = FakeHubSpot(tokens=[HS_TOKEN]).start()
        self.cleanup.callback(self.hubspot.stop)
        self.database_url = self.pg.create_database("leadpulse")
        (root / "metrics").mkdir()
        self.env = leadpulse_env(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis.url,
                "PORT": str(free_port()),
                "SLACK_BOT_TOKEN": BOT,
                "SLACK_ALERT_CHANNEL": self.channel,
                "SLACK_API_BASE": self.slack.base_url,
                "HUBSPOT_ACCESS_TOKEN": HS_TOKEN,
                "HUBSPOT_API_BASE": self.hubspot.url,
                "LEADPULSE_DEFAULT_INTEGRATION_UNITS": "*",  # every scenario's OU is served by the fakes
                "PROMETHEUS_MULTIPROC_DIR": str(root / "metrics"),
            }
        )
        self.settings = Settings.from_env(self.env)
        db_upgrade(self.settings)
        self.deployment = Deployment(root, self.env, self.settings)
        self.cleanup.callback(self.deployment.close)
        self.deployment.start_web()
        workers = [self.deployment.start_worker() for _ in range(SCALE.workers)]
        self.deployment.wait_web()
        self.deployment.wait_registered(workers)

    def healthy(self) -> bool:
        return self.deployment.web.alive() and self.pg.running() and self.redis.process.alive()

    def prepare(self) -> None:
        """A scenario starts with its full set of workers and fakes with no history or planned fault."""
        self.deployment.top_up(SCALE.workers)
        for fake in (self.slack, self.hubspot):
            fake.clear_faults()
            with fake.lock:
                fake.requests.clear()
        with self.slack.lock:
            self.slack.messages.clear()

    def close(self) -> None:
        self.cleanup.close()


class ServicesPool:
    """One Services per test process, started on first use and again after a scenario failed (whatever it left
    behind, a stuck lock or a dead server, must not fail the next one)."""

    def __init__(self, tmp_path_factory) -> None:
        self.tmp_path_factory = tmp_path_factory
        self.current: Services | None = None

    def get(self) -> Services:
        if self.current is not None and not self.current.healthy():
            self.discard()
        if self.current is None:
            self.current = Services(self.tmp_path_factory.mktemp("faults"))
        return self.current

    def discard(self) -> None:
        if self.current is not None:
            self.current.close()
            self.current = None


@dataclass
class Stack:
    """One scenario's view: the shared services, its own OU and credential, its recovery clocks."""

    services: Services
    store: Store
    headers: dict
    rng: random.Random
    record_property: object
    recoveries: list[Recovery] = field(default_factory=list)
    loads: list[EventLoad] = field(default_factory=list)

    scale = SCALE

    @property
    def pg(self) -> PostgresCluster:
        return self.services.pg

    @property
    def redis(self) -> RedisServer:
        return self.services.redis

    @property
    def slack(self) -> FakeSlack:
        return self.services.slack

    @property
    def hubspot(self) -> FakeHubSpot:
        return self.services.hubspot

    @property
    def deployment(self) -> Deployment:
        return self.services.deployment

    @property
    def slots(self) -> int:
        """Scoring slots (LEADPULSE_SCORING_PARALLELISM): how scoring partitions leads."""
        return self.services.settings.scoring_parallelism

    def load(self, prefix: str, events: int | None = None, rate: float | None = None, threads: int = 8) -> EventLoad:
        """A client sending this scenario's events until finish() (at least `events`); every lead is also a HubSpot
        contact, so syncs have work."""
        minimum = events or SCALE.events
        plan = Plan(max(10, minimum * SCALE.leads // SCALE.events), random.Random(self.rng.getrandbits(64)), prefix)
        for email in plan.emails:
            self.hubspot.add_contact(email)
        load = EventLoad(self.services.settings.port, self.headers, plan, minimum, rate or SCALE.rate, threads)
        self.loads.append(load)
        return load.start()

    def clock(self, fault: str, kind: str, since, load: EventLoad | None = None) -> Recovery:
        """Time the recovery from a fault at `since`. A stall beyond what is watched fails at once (nothing after it
        would mean much); a slow recovery fails at the end of the scenario, after every other check."""
        watch = LIMITS[kind] + SCALE.watch_beyond_limit
        overdue = Overdue(since, LIMITS[kind], lambda: evidence.report(self, since))
        if kind == "scoring":
            seconds = scoring_resumed(
                self.store, self.slots, since, load.done if load else lambda: True, watch, overdue
            )
        else:
            seconds = slack_resumed(self.store, since, watch, overdue)
        recovery = Recovery(fault, kind, seconds, watch, overdue.evidence)
        self.recoveries.append(recovery)
        self.record_property("recovery", (fault, kind, seconds, recovery.limit))
        if seconds is None:
            dead = [f"{p.name} (exit {p.exit_code()})" for p in self.deployment.dead_workers()]
            raise AssertionError(
                f"{recovery}: stalled; workers that died by themselves: {dead or 'none'}\n{recovery.evidence}"
            )
        return recovery

    def finish(self, load: EventLoad) -> None:
        """The client stops sending (its faults are in) and has every event answered, the workers owe nothing,
        exactly-once held, no worker died by itself; then the clocks."""
        load.join(timeout=SCALE.settle)
        outcome = Outcome(load.events, dict(load.accepted))
        took = settle(self.store, self.slack, self.hubspot, outcome, SCALE.settle)
        problems = verify(self.store, self.slack, outcome)
        print(
            f"{len(outcome.accepted)} events in {load.seconds:.1f} s, {len(outcome.scores)} leads, "
            f"{len(outcome.hot)} Hot; settled in "
            f"{took:.1f} s; client: {dict(load.stats.statuses)} answers, {dict(load.stats.failures)} unanswered, "
            f"{load.stats.retries} retries, {load.stats.duplicates} duplicates"
        )
        assert not problems, "exactly-once broke:\n" + "\n".join(problems)
        assert not load.stats.statuses[500], "the web answered 500 (a fault must be a 503 or no answer, never a 500)"
        dead = self.deployment.dead_workers()
        assert not dead, "workers died without being killed:\n" + "\n".join(f"{p.name}:\n{p.log_tail()}" for p in dead)
        slow = [r for r in self.recoveries if not r.ok]
        assert not slow, "recovery too slow:\n" + "\n".join(map(str, slow)) + "".join(f"\n{r.evidence}" for r in slow)


@pytest.fixture(scope="session")
def services_pool(tmp_path_factory):
    pool = ServicesPool(tmp_path_factory)
    yield pool
    pool.discard()


@pytest.fixture(autouse=True)
def scenario_deadline(request):
    """The net under every wait's own deadline: a scenario still running after SCALE.deadline seconds writes every
    thread's stack to /tmp/leadpulse-faults-stacks-<pid>.txt and ends its test process (pytest reports it lost, or
    exits non-zero), and the reaper kills what it started. The file is removed when the scenario ends in time."""
    path = Path(tempfile.gettempdir()) / f"leadpulse-faults-stacks-{os.getpid()}.txt"
    with open(path, "w") as out:
        out.write(f"{request.node.nodeid} ran past its deadline of {SCALE.deadline:.0f} s; every thread's stack:\n")
        out.flush()
        faulthandler.dump_traceback_later(SCALE.deadline, exit=True, file=out)
        try:
            yield
        finally:
            faulthandler.cancel_dump_traceback_later()
    path.unlink(missing_ok=True)


_tenants = itertools.count(1)


@pytest.fixture
def stack(services_pool, request, record_property):
    """A scenario on the shared services with an OU of its own (levels, a published ruleset, HubSpot and Slack by
    the environment's defaults). After a failure the services are torn down (process groups killed, temp dirs
    removed) and the next scenario starts new ones."""
    try:
        services = services_pool.get()
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    services.prepare()
    tenant = bootstrap_tenant(services.database_url, f"Faults {next(_tenants)}", "Main")
    get_engine(services.database_url).dispose()  # this process's pool on a server a scenario may crash
    headers = basic(tenant["client_id"], tenant["client_secret"])
    api = HttpApi(services.settings.port, headers)
    create_levels(api)
    published_ruleset(api, WEIGHTS)
    store = Store(services.database_url, tenant["unit_id"])
    record_property("seed", SEED)
    stack = Stack(services, store, headers, random.Random(f"{SEED}:{request.node.nodeid}"), record_property)
    yield stack
    for load in stack.loads:  # a scenario that failed midway leaves its client sending
        load.stop()
    store.close()
    failed = any(getattr(request.node, f"faults_{when}_failed", False) for when in ("setup", "call"))
    if failed:
        print(f"FAULTS_SEED={SEED}; {[str(r) for r in stack.recoveries]}\n{services.deployment.logs()}")
        print(f"----- postgres\n{services.pg.log_tail()}")
    if failed or not services.healthy():
        services_pool.discard()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Let the stack fixture know at teardown whether its scenario failed."""
    report = yield
    if report.failed:
        setattr(item, f"faults_{report.when}_failed", True)
    return report


def pytest_terminal_summary(terminalreporter):
    """The recovery times measured, for docs/guarantees.md (shown when the suite runs without xdist)."""
    rows = [
        value
        for reports in terminalreporter.stats.values()
        for report in reports
        if getattr(report, "when", None) == "call"
        for name, value in getattr(report, "user_properties", ())
        if name == "recovery"
    ]
    if not rows:
        return
    terminalreporter.section(f"fault recovery times (FAULTS_SCALE={SCALE_NAME}, FAULTS_SEED={SEED})")
    terminalreporter.line(f"{'after':<44} {'of':<8} {'seconds':>8} {'limit':>6}")
    for fault, kind, seconds, limit in rows:
        shown = f"{seconds:.1f}" if seconds is not None else "stalled"
        terminalreporter.line(f"{fault:<44} {kind:<8} {shown:>8} {limit:>6.0f}")
    by_kind: dict[str, list[float]] = {}
    for _, kind, seconds, _ in rows:
        if seconds is not None:
            by_kind.setdefault(kind, []).append(seconds)
    for kind, values in sorted(by_kind.items()):
        values.sort()
        terminalreporter.line(
            f"{kind}: {len(values)} measured, median {values[len(values) // 2]:.1f} s, max {values[-1]:.1f} s"
        )
