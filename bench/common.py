"""Helpers shared by the benchmarks: fresh databases, real CLI calls, process trees, tables, machine facts."""

from __future__ import annotations

import base64
import json
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_BIN = Path(sys.executable).parent
LEADPULSE = str(VENV_BIN / "leadpulse")
PG_BASE = os.environ.get("BENCH_PG_BASE", "postgresql+psycopg://postgres@127.0.0.1:5432")
REDIS_BASE = os.environ.get("BENCH_REDIS_BASE", "redis://127.0.0.1:6379")

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run_flags(p, default_db: str) -> None:
    """The flags every benchmark takes: its database, keeping it, a JSON copy of the results, and failing on a miss."""
    p.add_argument("--db", default=default_db)
    p.add_argument("--keep-db", action="store_true", help="leave the benchmark database for inspection")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed (default: only on errors)")


def database_url(name: str) -> str:
    return f"{PG_BASE}/{name}"


def libpq_dsn(name: str) -> str:
    """The same server as PG_BASE in psycopg's own spelling (for COPY and admin statements)."""
    return PG_BASE.replace("postgresql+psycopg://", "postgresql://") + f"/{name}"


def recreate_database(name: str) -> None:
    import psycopg

    with psycopg.connect(libpq_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(libpq_dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def analyze_like_autovacuum(name: str) -> bool:
    """ANALYZE the database when its server runs with autovacuum off, as autovacuum would for tables the warm-up grew.

    Production PostgreSQL analyzes a table once 50 + 10% of its rows changed, which also re-plans cached statements;
    this machine's test server has autovacuum off, so without this a run measures plans made for empty tables
    (a lookup of one lead by (unit_id, lead_id) then filtered every lead of the OU through the (unit_id, score) index).
    """
    import psycopg

    with psycopg.connect(libpq_dsn(name), autocommit=True) as conn:
        if conn.execute("SHOW autovacuum").fetchone()[0] == "on":
            return False
        conn.execute("ANALYZE")
    return True


def app_env(db_name: str, redis_db: int, queue: str, **extra) -> dict:
    """The environment every LeadPulse process of a benchmark gets (names are the app's contract)."""
    env = dict(os.environ)
    for k in (
        "LEADPULSE_BOOTSTRAP",
        "SECRET_KEY",
        "HUBSPOT_ACCESS_TOKEN",
        "SLACK_BOT_TOKEN",
        "SLACK_ALERT_CHANNEL",
        "LEADPULSE_DEFAULT_INTEGRATION_UNITS",
        "PROMETHEUS_MULTIPROC_DIR",
    ):
        env.pop(k, None)
    env.update(
        DATABASE_URL=database_url(db_name),
        REDIS_URL=f"{REDIS_BASE}/{redis_db}",
        LEADPULSE_QUEUE=queue,
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        # The `leadpulse` script imports the package its editable install names (perhaps another checkout): the code
        # measured is this checkout's.
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    # One credential from one address sends thousands a second: the limits are checked (their cost is measured)
    # but set far above what a benchmark sends.
    for name in ("ADDRESS", "INGEST", "API", "WEBHOOK"):
        env.setdefault(f"LEADPULSE_RATE_LIMIT_{name}", "100000000/minute")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def migrate(env: dict) -> None:
    """`leadpulse db upgrade`, as an installer (or an upgrade of a kept benchmark database) runs it."""
    subprocess.run([LEADPULSE, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)


def migrate_and_bootstrap(env: dict, org: str = "Bench", unit: str = "Main", member: tuple[str, str] = ()) -> dict:
    """`leadpulse db upgrade` then `leadpulse bootstrap`, exactly as an installer runs them; member: (email,
    password) of an Owner who signs in to the console."""
    migrate(env)
    login = ["--email", member[0], "--password", member[1]] if member else []
    out = subprocess.run(
        [LEADPULSE, "bootstrap", "--org", org, "--unit", unit, *login],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def flush_redis(redis_db: int) -> None:
    from redis import Redis

    Redis.from_url(f"{REDIS_BASE}/{redis_db}").flushdb()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    """Start a process in its own session so it (and only it) can be stopped as a group later."""
    fh = open(log_path, "wb")
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen, sig=signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal the process group we started, wait, and escalate to SIGKILL if it will not go."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0, log_path: Path | None = None) -> None:
    """Poll until the server answers (any HTTP status); fail fast if the server process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path else ""
            raise SystemExit(f"server exited with {proc.returncode} before answering {url}\n{tail}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                r.read()
                return
        except urllib.error.HTTPError:
            return
        except (TimeoutError, urllib.error.URLError, ConnectionError):
            time.sleep(0.05)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s")


# --- /proc helpers -------------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """Direct and indirect children, via /proc/<pid>/task/*/children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    kids = [int(x) for x in fh.read().split()]
                out += kids
                todo += kids
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            pass
    return out


def status_kb(pid: int, field: str) -> int:
    """VmRSS / VmHWM of one process in kB (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size: shared copy-on-write pages of a forked child counted once across the tree."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    """utime+stime of one process (plus cutime+cstime of the children it has reaped, if asked)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        ticks = sum(int(x) for x in fields[11 : 15 if reaped_children else 13])  # utime stime [cutime cstime]
        return ticks / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def tree_cpu_seconds(pid: int) -> float:
    """A process tree we started: live members plus whatever the tree has already reaped (forked job horses)."""
    return cpu_seconds(pid, True) + sum(cpu_seconds(c, True) for c in children_of(pid))


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as fh:
        vals = [int(x) for x in fh.readline().split()[1:]]
    idle = vals[3] + vals[4]
    total = sum(vals[:8])
    return total - idle, total


def cpu_probe(n: int = 20_000_000) -> float:
    """Seconds a fixed pure-Python loop takes now: on a VM whose host is shared, the same work takes up to ~1.8x as
    long in some minutes as in others, unseen by /proc/stat, so a benchmark prints this beside its times."""
    t0 = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return time.perf_counter() - t0


# --- output --------------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list]) -> str:
    cells = [headers] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: (
        "| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"
    )
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), sep] + [line(r) for r in cells[1:]])


def machine_facts() -> dict:
    import psycopg
    from redis import Redis

    with open("/proc/meminfo") as fh:
        mem = next(line.split()[1] for line in fh if line.startswith("MemTotal:"))
    with psycopg.connect(libpq_dsn("postgres")) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    redis_v = Redis.from_url(f"{REDIS_BASE}/0").info("server")["redis_version"]
    return {
        "uname": " ".join(platform.uname()),
        "nproc": os.cpu_count(),
        "mem_gib": round(int(mem) / 1024 / 1024, 1),
        "postgresql": pg,
        "redis": redis_v,
        "python": platform.python_version(),
    }


class ServiceCpu:
    """CPU used by PostgreSQL (this database's backends + shared processes) and Redis between start and now.

    Call sample() now and then: a backend that exits (a forked job closing its connections) keeps the last
    CPU reading taken of it, instead of disappearing from the sum.
    """

    def __init__(self, db_name: str):
        self.db_name = db_name
        self.base = self._read()
        self.last = dict(self.base)

    def _read(self) -> dict[int, tuple[str, float]]:
        return service_cpu_seconds(self.db_name, per_pid=True)

    def sample(self) -> None:
        self.last.update(self._read())

    def totals(self) -> dict[str, float]:
        out = {"postgres": 0.0, "redis-server": 0.0}
        for pid, (comm, cpu) in self.last.items():
            out[comm] += cpu - self.base.get(pid, (comm, 0.0))[1]
        return out


def service_cpu_seconds(db_name: str | None = None, per_pid: bool = False):
    """CPU seconds used so far by PostgreSQL (backends of db_name and the shared background processes) and Redis.

    Backends of other databases (someone else's test suite on the same server) are left out, so the
    numbers are this benchmark's own.
    """
    out = {"postgres": 0.0, "redis-server": 0.0}
    pids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as fh:
                comm = fh.read().strip()
            if comm not in ("postgres", "redis-server"):
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if comm == "postgres" and db_name and "(" in cmdline and f" {db_name} " not in cmdline:
            continue  # a client backend of another database
        cpu = cpu_seconds(int(entry))
        out[comm] += cpu
        pids[int(entry)] = (comm, cpu)
    return pids if per_pid else out


def connection_spread(port: int) -> list[int]:
    """Established client connections per server process on port, largest first (wrk's keep-alive connections land
    on whichever gunicorn worker accepts first; an uneven spread leaves a core idle and explains a slow run)."""
    out = subprocess.run(
        ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True
    ).stdout
    per: dict[str, int] = {}
    for pid in re.findall(r"pid=(\d+)", out):
        per[pid] = per.get(pid, 0) + 1
    return sorted(per.values(), reverse=True)


def spread_later(port: int, delay: float) -> dict:
    """Sample connection_spread(port) once, delay seconds from now, into the returned dict's "spread"."""
    box: dict = {"spread": []}
    timer = threading.Timer(delay, lambda: box.update(spread=connection_spread(port)))
    timer.daemon = True
    timer.start()
    return box


# --- the app, through its own API -----------------------------------------------------------------


def api(env: dict, cred: dict):
    """A Flask test client of the real app and a call() that fails loudly."""
    from config import Settings
    from webapp import create_app

    app = create_app(Settings.from_env(env))
    client = app.test_client()
    auth = {
        "Authorization": "Basic " + base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}".encode()).decode()
    }

    def call(method, path, body=None, expect=(200, 201, 202)):
        r = client.open(path, method=method, json=body, headers=auth)
        if r.status_code not in expect:
            raise SystemExit(f"{method} {path} -> {r.status_code} {r.get_data(as_text=True)}")
        return r.get_json(silent=True)

    return call


def configure_scoring(env: dict, cred: dict, levels, rules: dict, ruleset: str = "Main") -> None:
    """Levels and a published primary ruleset with rules, through the real API as a customer would set them up."""
    call = api(env, cred)
    for name, lo, hi in levels:
        call("POST", "/engagement-levels", {"name": name, "min_score": lo, "max_score": hi})
    rs = call("POST", "/rulesets", {"name": ruleset, "is_primary": True})["ruleset_id"]
    for event_type, weight in rules.items():
        call("POST", "/rules", {"ruleset_id": rs, "event_type": event_type, "weight": weight})
    call("POST", f"/rulesets/{rs}/publish")
    from config import Settings
    from models.db import get_engine

    get_engine(Settings.from_env(env).database_url).dispose()  # before any fork: children must not share its sockets


def wait_workers(redis, queue, procs, logdir, n) -> None:
    from rq import Worker

    deadline = time.monotonic() + 60
    while Worker.count(connection=redis, queue=queue) < n:
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise SystemExit(
                "workers did not start: " + " ".join(f.read_text()[-2000:] for f in logdir.glob("worker*.log"))
            )
        time.sleep(0.05)


def git_head() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        return head + (" (+ uncommitted changes)" if dirty else "")
    except OSError:
        return "?"
