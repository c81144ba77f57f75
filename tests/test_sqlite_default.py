"""Smoke test of the embedded default: `leadpulse dev` on a SQLite file, driven over real HTTP."""

import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest
import requests

from tests.conftest import wait_until
from tests.helpers import REFERENCE_LEVELS, free_port

pytestmark = pytest.mark.sqlite


@contextlib.contextmanager
def running_dev(tmp_path, redis_conn, **extra_env):
    """`leadpulse dev` on a SQLite file in tmp_path, answering; stopped (its whole process group) afterwards."""
    redis_conn.flushdb()
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path}/leadpulse.db",
        "PORT": str(port),
        "LEADPULSE_SWEEP_SECONDS": "1",
        "WEB_CONCURRENCY": "1",
        **extra_env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "dev"],
        env=env,
        cwd=tmp_path,
        stdout=open(tmp_path / "dev.log", "wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return requests.get(base + "/", timeout=1).status_code == 200
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still importing the app
            return False

    try:
        wait_until(up, timeout=60, message="leadpulse dev to answer")
        yield base, env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def dev_server(tmp_path, redis_conn):
    with running_dev(tmp_path, redis_conn) as server:
        yield server


def test_quickstart_on_sqlite(dev_server):
    base, env = dev_server
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker.cli",
            "bootstrap",
            "--org",
            "Acme",
            "--unit",
            "Main",
            "--email",
            "owner@acme.io",
            "--password",
            "pw-12345678",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    creds = json.loads(out.stdout)
    s = requests.Session()
    s.auth = (creds["client_id"], creds["client_secret"])
    for level in REFERENCE_LEVELS:
        assert s.post(base + "/engagement-levels", json=level).status_code == 201
    rs = s.post(base + "/rulesets", json={"name": "Engagement", "is_primary": True}).json()["ruleset_id"]
    assert (
        s.post(base + "/rules", json={"ruleset_id": rs, "event_type": "demo_request", "weight": 30}).status_code == 201
    )
    assert s.post(base + "/rules", json={"ruleset_id": rs, "event_type": "page_view", "weight": 5}).status_code == 201
    assert s.post(f"{base}/rulesets/{rs}/publish").status_code == 200
    for et in ("demo_request", "demo_request", "page_view"):
        r = s.post(
            base + "/ingest",
            json={"aliases": [{"alias_kind": "email", "raw_value": "Ada@Example.com"}], "event_type": et},
        )
        assert r.status_code == 202
    wait_until(
        lambda: s.get(base + "/leads").json()[0]["score"] == 65, timeout=30, message="the worker to score on SQLite"
    )
    lead = s.get(base + "/leads").json()[0]
    assert lead["level"]["name"] == "Hot" and lead["primary_email"] == "ada@example.com"
    # The ledger and the history on SQLite, which has none of PostgreSQL's covering indexes they are shaped for.
    ledger = s.get(f"{base}/lead/{lead['lead_id']}/score-explain").json()["ledger"][0]
    rules = {p["event_type"]: (p["count"], p["points"]) for p in ledger["parts"] if p["kind"] == "rule"}
    assert rules == {"demo_request": (2, 60), "page_view": (1, 5)} and sum(p["points"] for p in ledger["parts"]) == 65
    history = s.get(f"{base}/lead/{lead['lead_id']}/score-history").json()
    assert history["start_score"] == 0 and history["points"][-1]["score"] == 65
    # A level edit moves the lead on SQLite too, and the level filter reads the new ranges.
    levels = {lv["name"]: lv["id"] for lv in s.get(base + "/engagement-levels").json()["levels"]}
    assert s.put(f"{base}/engagement-levels/{levels['Very Hot']}", json={"min_score": 65}).status_code == 400
    assert s.put(f"{base}/engagement-levels/{levels['Hot']}", json={"max_score": 64}).status_code == 200
    assert s.get(base + "/leads").json()[0]["level"] is None
    assert len(s.get(base + "/leads", params={"level": "unclassified"}).json()) == 1
    assert s.put(f"{base}/engagement-levels/{levels['Very Hot']}", json={"min_score": 65}).status_code == 200
    assert s.get(base + "/leads").json()[0]["level"]["name"] == "Very Hot"
    assert [r["score"] for r in s.get(base + "/leads", params={"level": "very hot"}).json()] == [65]
    assert s.get(base + "/leads", params={"level": "hot"}).json() == []
    # A member (Bearer + activeOu cookie) reads the database on every request, then ingests.
    m = requests.Session()
    login = m.post(base + "/auth/login", json={"email": "owner@acme.io", "password": "pw-12345678"})
    assert login.status_code == 200, login.text
    token = login.json()["token"]
    m.headers["Authorization"] = f"Bearer {token}"
    assert m.post(base + "/org-units/active", json={"ouId": creds["unit_id"]}).status_code == 200
    for _ in range(3):
        r = m.post(base + "/ingest", json={"lead_id": "member-sent", "event_type": "page_view"}, timeout=10)
        assert r.status_code == 202, r.text
    wait_until(
        lambda: {x["lead_id"]: x["score"] for x in s.get(base + "/leads").json()}.get("member-sent") == 15,
        timeout=30,
        message="the member's events to be scored",
    )
    assert requests.get(base + "/leads").status_code == 401
    assert "events_ingested_total" in requests.get(base + "/metrics").text
    # The audit log on SQLite: every configuration write and the member's login, no event.
    audit = m.get(base + "/admin/audit-logs", params={"sort_order": "ASC"}, timeout=10).json()["items"]
    assert {(i["method"], i["path"]) for i in audit} == {
        ("POST", "/engagement-levels"),
        ("POST", "/rulesets"),
        ("POST", "/rules"),
        ("POST", f"/rulesets/{rs}/publish"),
        ("PUT", f"/engagement-levels/{levels['Hot']}"),
        ("PUT", f"/engagement-levels/{levels['Very Hot']}"),
        ("POST", "/auth/login"),
        ("POST", "/org-units/active"),
    }
    assert (
        len(audit) == 13 and audit[0]["client_id"] == creds["client_id"] and audit[-1]["user_email"] == "owner@acme.io"
    )


def test_demo_command_on_a_fresh_sqlite_file(tmp_path):
    """The README's first step: `leadpulse demo` creates an OU, seeds it and prints the outcome."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/leadpulse.db"}
    env.pop("HUBSPOT_ACCESS_TOKEN", None), env.pop("SLACK_BOT_TOKEN", None)
    run = [sys.executable, "-m", "worker.cli", "demo"]
    first = subprocess.run(run, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    assert "Created organization 'Demo', unit 'Main'" in first.stdout
    credential = json.loads(first.stdout.splitlines()[1])
    assert set(credential) == {"org_id", "unit_id", "client_id", "client_secret"}
    assert "seed-ada         Ada Lovelace         ada@example.com             88  Very Hot" in first.stdout
    assert "HubSpot: not configured; 6 contacts would get" in first.stdout and first.stdout.count("[pending]") == 3
    again = subprocess.run(run, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "0 new events" in again.stdout and "Created organization" not in again.stdout


def test_concurrent_writes_on_sqlite_all_succeed(dev_server):
    """Writers wait for SQLite's lock in C: the embedded default serves them from threads, none stalls the others."""
    from concurrent.futures import ThreadPoolExecutor

    base, env = dev_server
    out = subprocess.run(
        [sys.executable, "-m", "worker.cli", "bootstrap", "--org", "Acme", "--unit", "Main"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    creds = json.loads(out.stdout)
    auth = (creds["client_id"], creds["client_secret"])

    def write(n):
        if n % 3 == 0:
            level = {"name": f"L{n}", "min_score": 1000 + 10 * n, "max_score": 1005 + 10 * n, "color": "#94a3b8"}
            return requests.post(base + "/engagement-levels", json=level, auth=auth, timeout=20).status_code
        return requests.post(
            base + "/ingest", json={"lead_id": f"l{n}", "event_type": "page_view"}, auth=auth, timeout=20
        ).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(write, range(48)))
    assert sorted(set(codes)) == [201, 202], codes


def test_dev_restarts_a_worker_whose_job_outlived_its_timeout(tmp_path, redis_conn):
    """The worker's watchdog ends it (status 70) when a job swallows its timeout; `leadpulse dev` starts a fresh one."""
    from rq import Queue
    from rq.job import JobStatus

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with running_dev(tmp_path, redis_conn, LEADPULSE_JOB_GRACE_SECONDS="1", PYTHONPATH=root) as (base, env):
        queue = Queue(env["LEADPULSE_QUEUE"], connection=redis_conn)
        queue.enqueue("tests.helpers.stubborn_job", 60, job_timeout=1)
        wait_until(
            lambda: b"worker restarted" in (tmp_path / "dev.log").read_bytes(),
            timeout=60,
            message="dev to restart the worker",
        )
        after = queue.enqueue("tests.helpers.slow_job", 0)
        wait_until(
            lambda: after.get_status(refresh=True) == JobStatus.FINISHED,
            timeout=60,
            message="the new worker to run a job",
        )
        assert requests.get(base + "/", timeout=5).status_code == 200
