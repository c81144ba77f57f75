"""The `leadpulse` command: db upgrade, bootstrap, member add, web, worker, dev, demo, decay run.

It lives with the worker because most of it runs the worker; it starts the web app only as gunicorn's subprocess
("webapp.wsgi:app"), so `leadpulse worker` never imports Flask.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time

from redis import Redis
from rq import Queue
from sqlalchemy import func, select
from sqlalchemy.orm import configure_mappers

import models  # noqa: F401  (every table mapped before configure_mappers)
from config import Settings
from models.accounts import ROLES, AccountError, add_member, bootstrap_tenant
from models.db import run_as_worker, session_factory
from models.migrate import upgrade as db_upgrade
from models.tenancy import Organization, OrgUnit
from worker import jobs  # the jobs and all they call, loaded before the first job waits on it
from worker.demo import run_demo
from worker.process import WATCHDOG_EXIT, WatchedWorker
from worker.registry import worker_queues
from worker.sweep import start_sweeper

log = logging.getLogger("leadpulse.cli")
DEV_RESTART_AFTER = 10  # seconds a worker must have run for `leadpulse dev` to restart it after a crash


def run_member_add(
    settings: Settings, org: str, email: str, password: str | None, units: list[str] | None, role: str = "Owner"
) -> dict:
    with session_factory(settings.database_url, writer=True)() as s, s.begin():
        return add_member(s, org, email, password, units, role)


def run_decay_now(settings: Settings, unit_id: str | None) -> dict:
    """`leadpulse decay run`: the scheduled pass, now (of one OU, or all); what it stored, per OU, as JSON."""
    if unit_id is not None:
        with session_factory(settings.database_url)() as s:
            if s.get(OrgUnit, unit_id) is None:
                raise SystemExit(f"decay run failed: no organization unit {unit_id!r}")
    try:
        redis = Redis.from_url(settings.redis_url)
        redis.ping()
    except Exception as exc:  # scoring waits for the next worker's sweep then
        log.warning("Redis unreachable (%s): the DECAY events are scored when a worker next sweeps", exc)
        redis = None
    return jobs.decay_pass(settings, redis, unit_id).as_dict()


def bootstrap_on_first_start(settings: Settings) -> None:
    """LEADPULSE_BOOTSTRAP=org/unit creates a tenant when the database has none, and prints it once."""
    if not settings.bootstrap:
        return
    org, sep, unit = settings.bootstrap.partition("/")
    if not sep or not org.strip() or not unit.strip():
        raise SystemExit("configuration error: LEADPULSE_BOOTSTRAP must look like 'org/unit'")
    with session_factory(settings.database_url)() as s:
        if s.execute(select(func.count()).select_from(Organization)).scalar():
            return
    out = bootstrap_tenant(settings.database_url, org.strip(), unit.strip())
    print("LeadPulse bootstrap credential (shown once):\n" + json.dumps(out), flush=True)


def worker_model(settings: Settings) -> list[str]:
    """gevent on PostgreSQL; threads on the embedded SQLite, whose lock waits would block a whole gevent worker. Both
    are gunicorn's with every read from a client bounded in time (worker/web_server.py)."""
    if settings.database_url.startswith("sqlite"):
        return ["--worker-class", "worker.web_server.ThreadWorker", "--threads", "8"]
    # A request waiting on the database, Redis or the ingest commit costs a greenlet switch, not an OS thread
    # hand-off under the GIL (which capped single-event ingest at ~0.2 of a bare endpoint with gthread).
    return ["--worker-class", "worker.web_server.GeventWorker", "--worker-connections", str(settings.web_connections)]


def run_web(settings: Settings) -> None:
    env = dict(os.environ)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="leadpulse-metrics-"))
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "webapp.wsgi:app",
        "--bind",
        f"{settings.host}:{settings.port}",
        "--workers",
        str(settings.web_workers),
        *worker_model(settings),
        "--access-logfile",
        "-",
        "--access-logformat",
        '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
    ]
    os.execvpe(cmd[0], cmd, env)


def run_worker(settings: Settings, burst: bool = False) -> None:
    # Configure the ORM before the sweep thread starts: a fork taken while that thread holds the mapper lock (RQ
    # forks its scheduler process) leaves the child waiting on it forever.
    configure_mappers()
    run_as_worker()
    redis = Redis.from_url(settings.redis_url)
    queues = [Queue(name, connection=redis) for name in worker_queues(settings.queue_name)]
    sweeper = start_sweeper(
        session_factory(settings.database_url),
        redis,
        settings.queue_name,
        settings.scoring_parallelism,
        settings.sweep_interval_seconds,
        settings,
    )
    try:
        # Jobs run in this process, watched (worker/process.py): forking a work-horse per job cost ~0.1 s of CPU each.
        WatchedWorker(queues, connection=redis, grace=settings.job_grace_seconds, on_reconnect=sweeper.wake).work(
            with_scheduler=True, burst=burst, logging_level=settings.log_level
        )
    finally:
        sweeper.stop()


def run_dev(settings: Settings) -> None:
    """Web, worker (with its scheduler and sweep) in one process group, for a first run."""
    db_upgrade(settings)
    bootstrap_on_first_start(settings)
    exe = [sys.executable, "-m", "worker.cli"]
    # Plain http on localhost: no HSTS, no Secure cookies, unless LEADPULSE_ENV says otherwise.
    env = {**os.environ, "LEADPULSE_ENV": os.environ.get("LEADPULSE_ENV") or "development"}
    procs = [subprocess.Popen(exe + ["worker"], env=env), subprocess.Popen(exe + ["web"], env=env)]
    started = time.monotonic()
    print(
        f"LeadPulse is running at http://{settings.host}:{settings.port}/ (docs at /docs). Ctrl-C stops it.", flush=True
    )

    def stop(*_):
        for p in procs:
            if p.poll() is None:
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    try:
        while True:
            try:
                procs[0].wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass
            status = procs[0].poll()
            if status not in (None, 0) and (status == WATCHDOG_EXIT or time.monotonic() - started > DEV_RESTART_AFTER):
                # A job outlived its timeout, or the worker died of something unforeseen: a fresh one, as a
                # supervisor would. One that fails at once (its configuration) ends dev, its error on screen.
                print(f"LeadPulse worker restarted (it had exited with status {status})", flush=True)
                procs[0], started = subprocess.Popen(exe + ["worker"], env=env), time.monotonic()
            if not all(p.poll() is None for p in procs):
                break
    except KeyboardInterrupt:
        pass
    finally:
        stop()
        for p in procs:
            p.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="leadpulse", description="LeadPulse engagement scoring")
    sub = parser.add_subparsers(dest="command", required=True)
    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade"])
    boot = sub.add_parser("bootstrap", help="create an org, an OU and an API credential")
    boot.add_argument("--org", required=True)
    boot.add_argument("--unit", required=True)
    boot.add_argument("--email")
    boot.add_argument("--password")
    member = sub.add_parser("member", help="members (logins) of an existing organization")
    add = member.add_subparsers(dest="action", required=True).add_parser(
        "add", help="add a member who can log in (POST /auth/login), with a role in the OUs"
    )
    add.add_argument("--org", required=True, help="the organization's id or exact name")
    add.add_argument("--email", required=True)
    given = add.add_mutually_exclusive_group(required=True)
    given.add_argument(
        "--password", help="visible to other users of this machine while it runs: prefer --password-stdin"
    )
    given.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    add.add_argument(
        "--unit", action="append", help="an OU id or name (repeatable; default: every OU of the organization)"
    )
    add.add_argument(
        "--role", choices=ROLES, default="Owner", help="Viewer reads; Operator also configures; Owner also manages"
    )
    sub.add_parser("web", help="serve the API with gunicorn on HOST:PORT")
    wk = sub.add_parser("worker", help="RQ worker with its scheduler and the pending-event sweep")
    wk.add_argument("--burst", action="store_true", help="exit when the queue is empty")
    sub.add_parser("dev", help="migrate, then run web and worker together")
    demo = sub.add_parser("demo", help="seed sample levels, rules and events into an OU and show the outcome")
    demo.add_argument("--unit-id", help="the OU to seed (default: the only one, or a new Demo/Main)")
    decay = sub.add_parser("decay", help="score decay").add_subparsers(dest="action", required=True)
    decay_run = decay.add_parser("run", help="apply every decay period that has ended now (the schedule does the same)")
    decay_run.add_argument("--unit-id", help="only this OU (default: every OU)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    if args.command == "db":
        db_upgrade(settings)
    elif args.command == "bootstrap":
        if args.email and not args.password:
            parser.error("--password is required with --email")
        try:
            print(json.dumps(bootstrap_tenant(settings.database_url, args.org, args.unit, args.email, args.password)))
        except ValueError as exc:
            raise SystemExit(f"bootstrap failed: {exc}") from None
    elif args.command == "member":
        if args.password_stdin:  # a terminal gets a prompt that does not echo; a pipe gives its first line
            password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n")
        else:
            password = args.password
        try:
            print(json.dumps(run_member_add(settings, args.org, args.email, password, args.unit, args.role)))
        except AccountError as exc:
            raise SystemExit(f"member add failed: {exc}") from None
    elif args.command == "web":
        bootstrap_on_first_start(settings)
        run_web(settings)
    elif args.command == "worker":
        run_worker(settings, burst=args.burst)
    elif args.command == "dev":
        run_dev(settings)
    elif args.command == "demo":
        db_upgrade(settings)
        print(run_demo(settings, args.unit_id))
    elif args.command == "decay":
        print(json.dumps(run_decay_now(settings, args.unit_id)))


if __name__ == "__main__":
    main()
