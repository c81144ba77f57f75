"""Ingest-to-Slack latency: events at 200/s, p50 and p99 from POST /ingest to the Slack alert of a lead entering Hot.

    python bench/latency.py [--rate 200] [--duration 30] [--hot-rate 4] [--workers 2]

Target (issue): events at 200/s; ingest-to-Slack latency p50 and p99 for leads entering Hot; p99 under 1 s.

Setup: a fresh PostgreSQL database migrated and bootstrapped with the `leadpulse` CLI; levels Cold 0-24, Warm 25-49,
Hot 50-74, Very Hot 75+ and a published primary ruleset (page_view 5, demo_request 30) created through the API
(Flask test client). Then real processes, each in its own process group: the web app as users run it
(`leadpulse web`: gunicorn, gevent, HOST/PORT), two `leadpulse worker` processes (RQ with its scheduler, and the
sweep), and the fake Slack (tests/fakes/slack.py, real HTTP) inside this process. Alerts go to the channel named by
SLACK_BOT_TOKEN + SLACK_ALERT_CHANNEL (the app's environment configuration); the alert level is the default (Hot).

Load: an open-loop schedule of `rate` events per second for `duration` seconds. A dispatcher thread hands each
event at its scheduled time to an idle sender thread (one keep-alive http.client connection each), and starts another
sender whenever all of them are waiting on a response, so a slow server never slows the schedule down; how late each
send was against the schedule is reported. Most slots are background page_views spread round-robin over many leads,
none of which gets more than 9 (at most 45: Cold or Warm, never Hot). `hot-rate` times a second a "hot" lead gets 5
page_views 0.5 s apart (25: Warm), then 2 s after the last one a demo_request (55: Hot). That demo_request is the
crossing event; every other event keeps its lead below 50.

Measurement: per crossing lead, latency = the time.time() at which the fake Slack received the chat.postMessage
for it ("<lead_id> entered Hot with a score of 55"; a subclass of the fake stamps it) minus the time.time() at
which the crossing event's POST /ingest returned its 202, both clocks in this process. Reported: count, p50, p95,
p99, max (and the same from the moment the POST was sent). PASS if p99 < 1.0 s. Checks (exit 1 when broken):
every crossing lead got exactly one alert, no other lead (and no digest) got one, no request failed, every
accepted event was scored, no RQ job failed. The app's own `event_to_slack_latency_seconds` histogram (GET /metrics;
measured by the workers from the event's received_at to just after the post) is printed beside it.

Where the time goes: the crossing event's events.scored_at (the scoring batch's timestamp) splits each latency into
POST returned -> scored and scored -> Slack, and the RQ job that posted the alert (every finished job's enqueued,
started and ended times are read from Redis while they live) splits the second part into scored -> that job
started and job started -> the post. Also printed: queue waits and run times per job function, how many alert jobs
posted nothing, for how long every worker was running a scoring job, and the CPU each process used.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import queue
import re
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import git_head, log, wait_workers

sys.path.insert(0, str(common.ROOT))
from tests.fakes.slack import FakeSlack

DEFAULT_DB = "leadpulse_bench_latency"
REDIS_DB = 11
QUEUE = "leadpulse-bench-latency"
BOT = "xoxb-bench-latency"
LEVELS = [("Cold", 0, 24), ("Warm", 25, 49), ("Hot", 50, 74), ("Very Hot", 75, None)]
RULES = {"page_view": 5, "demo_request": 30}
WARM_UP_VIEWS = 5  # page_views that take a hot lead to 25 (Warm)
VIEW_SPACING = 0.5  # seconds between them
CROSS_AFTER = 2.0  # seconds from the last page_view to the demo_request (55: Hot)
MAX_BACKGROUND_VIEWS = 9  # 45 points: a background lead never reaches Hot
ALERT = re.compile(r"^(?P<who>\S+) entered Hot with a score of (?P<score>\d+)$")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=200.0, help="events per second sent (default 200)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load (default 30)")
    p.add_argument("--hot-rate", type=float, default=4.0, help="leads entering Hot per second (default 4)")
    p.add_argument(
        "--leads",
        type=int,
        default=None,
        help="background leads (default: enough for ~6 page_views each, at most 9 so none reaches Hot)",
    )
    p.add_argument("--workers", type=int, default=2, help="`leadpulse worker` processes (default 2)")
    p.add_argument("--slots", type=int, default=None, help="LEADPULSE_SCORING_PARALLELISM (default: the app's, 2)")
    p.add_argument(
        "--senders", type=int, default=32, help="sender threads to start with, one connection each (default 32)"
    )
    p.add_argument(
        "--max-senders",
        type=int,
        default=1000,
        help="more are started whenever every sender waits on a response, up to this many (default 1000)",
    )
    p.add_argument(
        "--drain-timeout", type=float, default=90.0, help="seconds to wait for the last alerts after the load"
    )
    p.add_argument("--target-p99", type=float, default=1.0, help="seconds (default 1.0)")
    p.add_argument(
        "--py-spy",
        metavar="DIR",
        help="record py-spy (raw, --idle, --subprocesses) of the web server and the workers during the load",
    )
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when the target is missed (default: only on errors)")
    return p.parse_args(argv)


class TimedSlack(FakeSlack):
    """The test fake, plus the time.time() at which each posted message arrived; its HTTP behaviour is unchanged."""

    def _api_chat_postMessage(self, who: dict, args: dict) -> dict:
        at = time.time()
        n = len(self.messages)
        out = super()._api_chat_postMessage(who, args)
        if out.get("ok") and len(self.messages) > n:
            self.messages[-1]["at"] = at
        return out


# --- the event stream ----------------------------------------------------------------------------


def build_schedule(rate: float, duration: float, hot_rate: float, leads: int | None) -> tuple[list, dict, int]:
    """[(seconds from start, body)] for every slot of a `rate`/s grid, the crossing event id per hot lead, background leads.

    Hot leads' events take the first free slot at or after their wanted time; the other slots are background page_views.
    """
    n = int(rate * duration)
    slots: list = [None] * n
    first_cross = WARM_UP_VIEWS * VIEW_SPACING + CROSS_AFTER
    n_hot = max(0, int((duration - first_cross - 0.5) * hot_rate))
    crossing: dict[str, str] = {}

    def place(at: float, body: dict) -> None:
        i = max(0, math.ceil(at * rate - 1e-9))
        while i < n and slots[i] is not None:
            i += 1
        if i >= n:
            raise SystemExit("the schedule is too full for the hot leads: lower --hot-rate or raise --rate")
        slots[i] = body

    for k in range(n_hot):
        lead = f"hot-{k:05d}"
        cross_at = first_cross + k / hot_rate
        last_view = cross_at - CROSS_AFTER
        for v in range(WARM_UP_VIEWS):
            place(
                last_view - (WARM_UP_VIEWS - 1 - v) * VIEW_SPACING,
                {"lead_id": lead, "event_type": "page_view", "event_id": f"{lead}-v{v}"},
            )
        crossing[lead] = f"{lead}-demo"
        place(cross_at, {"lead_id": lead, "event_type": "demo_request", "event_id": crossing[lead]})
    n_bg = sum(1 for s in slots if s is None)
    per_lead = 6
    leads = leads or max(1, math.ceil(n_bg / per_lead))
    if math.ceil(n_bg / leads) > MAX_BACKGROUND_VIEWS:
        raise SystemExit(
            f"{n_bg} background events over {leads} leads would take some to Hot: use --leads >= "
            f"{math.ceil(n_bg / MAX_BACKGROUND_VIEWS)}"
        )
    j = 0
    for i in range(n):
        if slots[i] is None:
            lead = f"lead-{j % leads:05d}"
            slots[i] = {
                "lead_id": lead,
                "event_type": "page_view",
                "event_id": f"bg-{j}",
                "metadata": {"url": "/pricing"},
            }
            j += 1
    return [(i / rate, body) for i, body in enumerate(slots)], crossing, leads


class OpenLoop:
    """Sends each event at its scheduled time (a dispatcher thread feeding a pool of senders), never slowing down."""

    def __init__(self, port: int, auth: str, schedule: list, senders: int, max_senders: int):
        self.port, self.schedule, self.senders, self.max_senders = port, schedule, senders, max_senders
        self._lock = threading.Lock()
        self._idle = 0
        self.peak_senders = senders
        self.headers = {"Content-Type": "application/json", "Authorization": "Basic " + auth}
        n = len(schedule)
        self.due = [0.0] * n  # time.time() the event was due
        self.sent = [0.0] * n  # time.time() the request was handed to the socket
        self.done = [0.0] * n  # time.time() the response was read
        self.status = [0] * n
        self.errors: list[str] = []
        self.reconnects = 0
        self._q: queue.SimpleQueue = queue.SimpleQueue()

    def run(self) -> float:
        threads = [self._spawn() for _ in range(self.senders)]
        t0_wall = time.time() + 0.2
        t0 = time.perf_counter() + 0.2
        for i, (at, _) in enumerate(self.schedule):
            wait = t0 + at - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            self.due[i] = t0_wall + at
            with self._lock:  # take an idle sender, or start one more: the schedule holds however slow the answers
                idle = self._idle > 0
                self._idle -= idle
            if not idle and len(threads) < self.max_senders:
                threads.append(self._spawn(idle=False))
            self._q.put(i)
        for _ in threads:
            self._q.put(None)
        for t in threads:
            t.join()
        self.peak_senders = len(threads)
        return t0_wall

    def _spawn(self, idle: bool = True) -> threading.Thread:
        with self._lock:
            self._idle += idle
        t = threading.Thread(target=self._send_loop, daemon=True)
        t.start()
        return t

    def _send_loop(self) -> None:
        conn = None
        while True:
            i = self._q.get()
            if i is None:
                break
            body = json.dumps(self.schedule[i][1])
            for attempt in (1, 2):
                fresh = conn is None
                if fresh:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                try:
                    self.sent[i] = time.time()
                    conn.request("POST", "/ingest", body, self.headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.done[i] = time.time()
                    self.status[i] = resp.status
                    if resp.status != 202:
                        self.errors.append(f"{self.schedule[i][1]['event_id']}: {resp.status} {data[:200]!r}")
                    if resp.will_close:
                        conn.close()
                        conn = None
                    break
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = None
                    # A kept-alive connection the server closed meanwhile: resend once (event_id makes it idempotent).
                    if fresh or attempt == 2:
                        self.errors.append(f"{self.schedule[i][1]['event_id']}: {exc!r}")
                        break
                    self.reconnects += 1
            with self._lock:
                self._idle += 1
        if conn is not None:
            conn.close()


def cpu_fields() -> dict[str, int]:
    """The whole machine's jiffies from /proc/stat: busy (user, nice, system, irq, softirq), iowait, steal, total."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:9]]
    return dict(busy=v[0] + v[1] + v[2] + v[5] + v[6], iowait=v[4], steal=v[7], total=sum(v))


class CpuMeter:
    """CPU seconds used by the web server, each worker (trees, with reaped work-horses), PostgreSQL, Redis and
    this process (sender threads and the fake Slack) between construction and read(); and the machine's shares."""

    def __init__(self, db: str, procs: list):
        import resource

        self.procs, self.wall = procs, time.monotonic()
        self.rusage = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        self.services = common.ServiceCpu(db)
        self.base = [common.tree_cpu_seconds(p.pid) for p in procs], self.rusage(), cpu_fields()

    def read(self) -> dict:
        trees, me, machine = [common.tree_cpu_seconds(p.pid) for p in self.procs], self.rusage(), cpu_fields()
        self.services.sample()
        svc = self.services.totals()
        wall = time.monotonic() - self.wall
        d = {k: machine[k] - self.base[2][k] for k in machine}
        return dict(
            wall=wall,
            web=trees[0] - self.base[0][0],
            workers=[t - b for t, b in zip(trees[1:], self.base[0][1:])],
            postgres=svc["postgres"],
            redis=svc["redis-server"],
            bench=me - self.base[1],
            busy_pct=100.0 * d["busy"] / max(1, d["total"]),
            steal_pct=100.0 * d["steal"] / max(1, d["total"]),
            iowait_pct=100.0 * d["iowait"] / max(1, d["total"]),
        )


class JobMonitor(threading.Thread):
    """Reads every finished or failed RQ job of the bench's queues (scoring and the urgent alert queue) while its hash
    lives (result_ttl 60 s): when it was enqueued, started and ended, by function name."""

    def __init__(self, redis, queues, interval: float = 0.5):
        super().__init__(daemon=True)
        self.redis, self.queues, self.interval = redis, queues, interval
        self.jobs: dict[str, dict] = {}
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.wait(self.interval):
            self.fetch()
        self.fetch()

    def fetch(self) -> None:
        from rq.job import Job

        ids = [
            j
            for q in self.queues
            for j in q.finished_job_registry.get_job_ids() + q.failed_job_registry.get_job_ids()
            if j not in self.jobs
        ]
        ts = lambda d: None if d is None else d.timestamp() if d.tzinfo else d.replace(tzinfo=UTC).timestamp()
        for jid, job in zip(ids, Job.fetch_many(ids, connection=self.redis)):
            if job is not None and job.ended_at is not None:
                self.jobs[jid] = dict(
                    func=job.func_name.rsplit(".", 1)[-1],
                    enqueued=ts(job.enqueued_at),
                    started=ts(job.started_at),
                    ended=ts(job.ended_at),
                    worker=job.worker_name,
                    status=job.get_status().value,
                    result=job.return_value(),
                )

    def stop(self) -> dict[str, dict]:
        self.stop_flag.set()
        self.join()
        return self.jobs


# --- reading the results -------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    s = sorted(values)
    return s[max(0, math.ceil(q / 100 * len(s)) - 1)]


def summary(values: list[float]) -> dict:
    return dict(
        count=len(values),
        p50=pct(values, 50),
        p95=pct(values, 95),
        p99=pct(values, 99),
        max=max(values) if values else float("nan"),
        mean=sum(values) / len(values) if values else float("nan"),
    )


def app_histogram(port: int) -> dict:
    """event_to_slack_latency_seconds from the app's GET /metrics: count, sum, cumulative buckets."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out = {"count": 0.0, "sum": 0.0, "buckets": {}}
    for line in text.splitlines():
        if line.startswith("event_to_slack_latency_seconds_count"):
            out["count"] = float(line.split()[-1])
        elif line.startswith("event_to_slack_latency_seconds_sum"):
            out["sum"] = float(line.split()[-1])
        elif line.startswith("event_to_slack_latency_seconds_bucket"):
            le = re.search(r'le="([^"]+)"', line).group(1)
            out["buckets"][le] = float(line.split()[-1])
    return out


def stage_times(db: str, unit_id: str, crossing: dict[str, str]) -> dict[str, dict]:
    """Per crossing lead, from the database: the crossing event's received_at and scored_at, the alert's sent_at."""
    import psycopg

    out = {}
    with psycopg.connect(common.libpq_dsn(db)) as conn:
        rows = conn.execute(
            "SELECT l.lead_id, e.received_at, e.scored_at, "
            " (SELECT min(a.sent_at) FROM slack_alerts a WHERE a.lead_pk = l.pk AND a.kind = 'lead') "
            "FROM events e JOIN leads l ON l.pk = e.lead_pk WHERE e.unit_id = %s AND e.idempotency_key = ANY(%s)",
            (unit_id, list(crossing.values())),
        ).fetchall()
    for lead_id, received, scored, sent in rows:
        out[lead_id] = dict(
            received=received.timestamp() if received else None,
            scored=scored.timestamp() if scored else None,
            alert_sent_at=sent.timestamp() if sent else None,
        )
    return out


def event_counts(db: str, unit_id: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(common.libpq_dsn(db)) as conn:
        return conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 0) FROM events WHERE unit_id = %s", (unit_id,)
        ).fetchone()


def all_busy_scoring(jobs: list[dict], workers: int, start: float, end: float) -> float:
    """Seconds of [start, end] during which score_slot jobs held every worker (nothing else could start)."""
    edges = sorted(
        [
            (max(start, j["started"]), 1)
            for j in jobs
            if j["func"] == "score_slot" and j["ended"] > start and j["started"] < end
        ]
        + [
            (min(end, j["ended"]), -1)
            for j in jobs
            if j["func"] == "score_slot" and j["ended"] > start and j["started"] < end
        ]
    )
    running, last, total = 0, start, 0.0
    for at, step in edges:
        if running >= workers:
            total += at - last
        running += step
        last = at
    return total


def fmt(s: float) -> str:
    return "-" if s != s else f"{s * 1000:.0f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    from redis import Redis
    from rq import Queue

    from worker.registry import worker_queues

    schedule, crossing, n_leads = build_schedule(args.rate, args.duration, args.hot_rate, args.leads)
    n_cross = len(crossing)
    log(
        f"{len(schedule)} events over {args.duration:.0f}s at {args.rate:.0f}/s: {n_cross} leads enter Hot, "
        f"{n_leads} background leads (page_views only, each stays below Hot)"
    )

    fake = TimedSlack(bot_token=BOT).start()
    channel = fake.add_channel("sales")
    log(f"fake Slack at {fake.base_url}, channel {channel}")

    log(f"fresh database {args.db}, migrate, bootstrap, levels and a published primary ruleset")
    common.recreate_database(args.db)
    common.flush_redis(REDIS_DB)
    metrics_dir = tempfile.mkdtemp(prefix="leadpulse-bench-latency-metrics-")
    port = common.free_port()
    env = common.app_env(
        args.db,
        REDIS_DB,
        QUEUE,
        SLACK_API_BASE=fake.base_url,
        SLACK_BOT_TOKEN=BOT,
        SLACK_ALERT_CHANNEL=channel,
        HOST="127.0.0.1",
        PORT=port,
        PROMETHEUS_MULTIPROC_DIR=metrics_dir,
    )
    if args.slots:
        env["LEADPULSE_SCORING_PARALLELISM"] = str(args.slots)
    from config import Settings

    slots = Settings.from_env(env).scoring_parallelism
    cred = common.migrate_and_bootstrap(env)
    unit_id = cred["unit_id"]
    common.configure_scoring(env, cred, LEVELS, RULES, ruleset="Engagement")
    auth = base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}".encode()).decode()

    redis = Redis.from_url(f"{common.REDIS_BASE}/{REDIS_DB}")
    rq_queue = Queue(QUEUE, connection=redis)
    logdir = Path(tempfile.mkdtemp(prefix="leadpulse-bench-latency-"))
    procs: list = []
    spies: list = []
    sender = None
    try:
        procs.append(common.start([common.LEADPULSE, "web"], env, logdir / "web.log"))
        procs += [
            common.start([common.LEADPULSE, "worker"], env, logdir / f"worker{i}.log") for i in range(args.workers)
        ]
        common.wait_http(f"http://127.0.0.1:{port}/", procs[0], timeout=60, log_path=logdir / "web.log")
        wait_workers(redis, rq_queue, procs[1:], logdir, args.workers)
        time.sleep(2)  # let each worker's start-up sweep pass finish before the load
        log(f"web on :{port} and {args.workers} workers up (logs in {logdir}); sending for {args.duration:.0f}s")
        if args.py_spy:
            spy_dir = Path(args.py_spy).resolve()
            spy_dir.mkdir(parents=True, exist_ok=True)
            spies = [
                common.start(
                    [
                        str(common.VENV_BIN / "py-spy"),
                        "record",
                        "--idle",
                        "--subprocesses",
                        "-r",
                        "100",
                        "-d",
                        str(int(args.duration + 10)),
                        "-f",
                        "raw",
                        "-o",
                        str(spy_dir / f"{name}.txt"),
                        "-p",
                        str(p.pid),
                    ],
                    dict(os.environ),
                    spy_dir / f"{name}.log",
                )
                for name, p in [("web", procs[0])] + [(f"worker{i}", p) for i, p in enumerate(procs[1:])]
            ]
        monitor = JobMonitor(redis, [Queue(name, connection=redis) for name in worker_queues(QUEUE)])
        monitor.start()
        cpu = CpuMeter(args.db, procs)
        sender = OpenLoop(port, auth, schedule, args.senders, args.max_senders)
        t0 = sender.run()
        cpu_used = cpu.read()
        load_end = time.time()
        log(f"load sent in {load_end - t0:.1f}s; waiting for the alerts (up to {args.drain_timeout:.0f}s)")

        def alerted() -> set:
            with fake.lock:
                return {m["text"].split(" ", 1)[0] for m in fake.messages if m.get("text")}

        deadline = time.monotonic() + args.drain_timeout
        while not set(crossing) <= alerted() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3.0)  # room for a duplicate or a stray alert to show up
        jobs = list(monitor.stop().values())
        hist = app_histogram(port)
        total_events, pending = event_counts(args.db, unit_id)
        stages = stage_times(args.db, unit_id, crossing)
        failed_jobs = sum(len(Queue(name, connection=redis).failed_job_registry) for name in worker_queues(QUEUE))
    finally:
        for p in spies:
            common.stop(p, sig=2, timeout=30)
        for p in procs:
            common.stop(p, timeout=30)
        log("web and workers stopped")
        fake.stop()

    # --- analysis
    index = {body["event_id"]: i for i, (_, body) in enumerate(schedule)}
    with fake.lock:
        messages = [m for m in fake.messages]
    by_who: dict[str, list] = {}
    unexpected = []
    for m in messages:
        match = ALERT.match(m.get("text") or "")
        if match is None or m["channel"] != channel:
            unexpected.append(m.get("text"))
            continue
        by_who.setdefault(match.group("who"), []).append((m["at"], int(match.group("score"))))
    missing = [lead for lead in crossing if lead not in by_who]
    duplicated = {lead: len(v) for lead, v in by_who.items() if lead in crossing and len(v) > 1}
    wrong_score = {lead: v[0][1] for lead, v in by_who.items() if lead in crossing and v[0][1] != 55}
    strangers = sorted(lead for lead in by_who if lead not in crossing)
    deliver_jobs = sorted(
        (j for j in jobs if j["func"] == "deliver_slack_alerts" and j["started"]), key=lambda j: j["started"]
    )
    lat_done, lat_sent, to_scored, scored_to_slack = [], [], [], []
    scored_to_job, job_to_post = [], []
    per_lead = {}
    for lead, event_id in crossing.items():
        i = index[event_id]
        if lead not in by_who or sender.status[i] != 202:
            continue
        at = by_who[lead][0][0]
        lat_done.append(at - sender.done[i])
        lat_sent.append(at - sender.sent[i])
        st = stages.get(lead, {})
        if st.get("scored"):
            to_scored.append(st["scored"] - sender.done[i])
            scored_to_slack.append(at - st["scored"])
            job = next((j for j in deliver_jobs if j["started"] - 0.05 <= at <= j["ended"] + 0.05), None)
            if job is not None:  # the job that posted it: scored -> it started (commit, kick, queue) -> the post
                scored_to_job.append(job["started"] - st["scored"])
                job_to_post.append(at - job["started"])
        per_lead[lead] = dict(due=sender.due[i], sent=sender.sent[i], done=sender.done[i], slack=at, **st)
    send_lag = [s - d for s, d in zip(sender.sent, sender.due) if s]
    post_time = [d - s for s, d, st in zip(sender.sent, sender.done, sender.status) if st == 202]
    accepted = sum(1 for s in sender.status if s == 202)

    s_done, s_sent = summary(lat_done), summary(lat_sent)
    target_ok = len(lat_done) > 0 and s_done["p99"] < args.target_p99
    sound = (
        not sender.errors
        and not missing
        and not duplicated
        and not wrong_score
        and not strangers
        and not unexpected
        and pending == 0
        and total_events >= accepted
        and failed_jobs == 0
    )

    print()
    print(
        f"ingest-to-Slack latency benchmark: {len(schedule)} events at {args.rate:.0f}/s for {args.duration:.0f}s "
        f"(open loop, {sender.peak_senders} senders), {n_cross} leads entering Hot ({args.hot_rate:g}/s), {n_leads} background leads; "
        f"`leadpulse web` (gunicorn, 2 gevent workers) + {args.workers} x `leadpulse worker` ({slots} scoring slots), fake Slack"
    )
    rows = [
        [
            "POST returned -> Slack (target)",
            s_done["count"],
            fmt(s_done["p50"]),
            fmt(s_done["p95"]),
            fmt(s_done["p99"]),
            fmt(s_done["max"]),
            ("PASS" if target_ok else "FAIL") + f" (p99 < {args.target_p99 * 1000:.0f} ms)",
        ],
        [
            "POST sent -> Slack",
            s_sent["count"],
            fmt(s_sent["p50"]),
            fmt(s_sent["p95"]),
            fmt(s_sent["p99"]),
            fmt(s_sent["max"]),
            "",
        ],
    ]
    for name, vals in (
        ("  POST returned -> crossing event scored", to_scored),
        ("  scored -> Slack", scored_to_slack),
        ("    scored -> the posting alert job started", scored_to_job),
        ("    that job started -> the post", job_to_post),
    ):
        sm = summary(vals)
        rows.append([name, sm["count"], fmt(sm["p50"]), fmt(sm["p95"]), fmt(sm["p99"]), fmt(sm["max"]), ""])
    for name, vals in (("POST /ingest response time (all events)", post_time), ("send lag behind schedule", send_lag)):
        sm = summary(vals)
        rows.append([name, sm["count"], fmt(sm["p50"]), fmt(sm["p95"]), fmt(sm["p99"]), fmt(sm["max"]), ""])
    print(common.table(["latency", "count", "p50 ms", "p95 ms", "p99 ms", "max ms", "result"], rows))
    windows: dict[int, list] = {}
    for (at, _), s, d, st in zip(schedule, sender.sent, sender.done, sender.status):
        if st == 202:
            windows.setdefault(int(at // 5), []).append(d - s)
    print(
        "POST /ingest p50 / max by 5 s of load (growing = the server falls behind the offered rate): "
        + ", ".join(f"{fmt(pct(v, 50))}/{fmt(max(v))}" for _, v in sorted(windows.items()))
        + " ms"
    )
    for func in ("deliver_slack_alerts", "score_slot"):
        js = [j for j in jobs if j["func"] == func and j["started"]]
        wait, run = (
            summary([j["started"] - j["enqueued"] for j in js if j["enqueued"]]),
            summary([j["ended"] - j["started"] for j in js]),
        )
        print(
            f"RQ jobs {func}: {len(js)}; enqueued -> started p50 {fmt(wait['p50'])} ms, p99 {fmt(wait['p99'])} ms, "
            f"max {fmt(wait['max'])} ms; run time p50 {fmt(run['p50'])} ms, max {fmt(run['max'])} ms"
        )
    idle_deliveries = sum(1 for j in jobs if j["func"] == "deliver_slack_alerts" and j.get("result") == 0)
    blocked = all_busy_scoring(jobs, args.workers, t0, load_end)
    print(
        f"    deliver_slack_alerts jobs that posted nothing: {idle_deliveries}; every worker running score_slot for "
        f"{blocked:.1f}s of the {load_end - t0:.1f}s load ({100 * blocked / max(1e-9, load_end - t0):.0f}%), when no alert job can start"
    )
    others = sorted({j["func"] for j in jobs} - {"deliver_slack_alerts", "score_slot"})
    if others:
        print("other RQ jobs: " + ", ".join(f"{f} {sum(1 for j in jobs if j['func'] == f)}" for f in others))
    mean = hist["sum"] / hist["count"] if hist["count"] else float("nan")
    le1 = hist["buckets"].get("1.0", hist["buckets"].get("1", 0.0))
    print(
        f"app's event_to_slack_latency_seconds (GET /metrics, received_at -> after the post): count {hist['count']:.0f}, "
        f"sum {hist['sum']:.2f}s, mean {fmt(mean)} ms, <= 1 s: {le1:.0f}; this bench: mean {fmt(s_done['mean'])} ms "
        f"over {s_done['count']}"
    )
    print(
        f"checks: {accepted}/{len(schedule)} accepted (202), request errors {len(sender.errors)} "
        f"(reconnects {sender.reconnects}), {total_events} events stored, {pending} unscored; alerts: {len(messages)} messages, "
        f"{n_cross - len(missing)}/{n_cross} crossing leads alerted, missing {len(missing)}, duplicated {len(duplicated)}, "
        f"wrong score {len(wrong_score)}, other leads alerted {len(strangers)}, other messages {len(unexpected)}; "
        f"failed RQ jobs {failed_jobs}: {'ok' if sound else 'BROKEN'}"
    )
    c = cpu_used
    ours = c["web"] + sum(c["workers"]) + c["postgres"] + c["redis"] + c["bench"]
    machine_s = c["wall"] * (os.cpu_count() or 1)
    print(
        f"cpu during the load ({c['wall']:.1f}s, {os.cpu_count()} CPUs): web {c['web']:.1f}s, workers "
        f"{' + '.join(f'{w:.1f}' for w in c['workers'])}s, postgres {c['postgres']:.1f}s, redis {c['redis']:.1f}s, "
        f"this process (senders + fake Slack) {c['bench']:.1f}s; machine busy {c['busy_pct']:.0f}% + steal {c['steal_pct']:.0f}% "
        f"+ iowait {c['iowait_pct']:.0f}%; other processes {max(0.0, c['busy_pct'] - 100 * ours / machine_s):.0f}% of the machine"
    )
    print(f"app: {git_head()}")
    for what, items in (
        ("request error", sender.errors),
        ("missing alert", missing),
        ("duplicated", list(duplicated.items())),
        ("wrong score", list(wrong_score.items())),
        ("other lead alerted", strangers),
        ("other message", unexpected),
    ):
        for item in list(items)[:5]:
            print(f"    {what}: {item}")

    if args.json:
        Path(args.json).write_text(
            json.dumps(
                dict(
                    rate=args.rate,
                    duration=args.duration,
                    hot_rate=args.hot_rate,
                    events=len(schedule),
                    crossing=n_cross,
                    background_leads=n_leads,
                    workers=args.workers,
                    slots=slots,
                    latency_from_post_returned=s_done,
                    latency_from_post_sent=s_sent,
                    post_to_scored=summary(to_scored),
                    scored_to_slack=summary(scored_to_slack),
                    scored_to_alert_job=summary(scored_to_job),
                    alert_job_to_post=summary(job_to_post),
                    jobs=jobs,
                    post_response=summary(post_time),
                    send_lag=summary(send_lag),
                    app_histogram=hist,
                    accepted=accepted,
                    request_errors=sender.errors[:50],
                    reconnects=sender.reconnects,
                    senders=sender.peak_senders,
                    stored=total_events,
                    unscored=pending,
                    messages=len(messages),
                    missing=missing,
                    duplicated=duplicated,
                    wrong_score=wrong_score,
                    strangers=strangers,
                    unexpected=unexpected[:50],
                    failed_jobs=failed_jobs,
                    cpu=cpu_used,
                    sound=sound,
                    target_ok=target_ok,
                    per_lead=per_lead,
                ),
                indent=2,
                default=str,
            )
        )
    redis.flushdb()
    shutil.rmtree(metrics_dir, ignore_errors=True)
    if not args.keep_db:
        common.drop_database(args.db)
    return 0 if sound and (target_ok or not args.strict) else 1


if __name__ == "__main__":
    sys.exit(main())
