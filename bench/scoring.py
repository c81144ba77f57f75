"""Scoring throughput: 100,000 pending events over 10,000 leads scored by 2 real `leadpulse worker` processes.

    python bench/scoring.py [--events 100000] [--leads 10000] [--workers 2]

A fresh PostgreSQL database is migrated and bootstrapped with the `leadpulse` CLI; levels and a published
primary ruleset are created through the API (Flask test client). The pending events are then loaded with
COPY (status 0 = pending, exactly the columns models.ingest writes) with no worker running. Then the workers
start; the slot flags are held until both have registered with RQ, so the clock starts at the kick and not at
interpreter start-up. Elapsed time runs until no event has status 0. Peak memory of each worker's process tree
(the RQ worker plus the work-horse it forks per job) is sampled from /proc. Every lead's score and level is
checked against a replay of what was inserted. Targets: >= 5,000 events/s, < 300 MB per worker.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import log

DEFAULT_DB = "leadpulse_bench_scoring"
REDIS_DB = 13
QUEUE = "leadpulse-bench-scoring"

# event_type -> (weight, share of the generated events); "video_play" has no rule and must score nothing.
RULES = {"page_view": 1, "email_open": 2, "form_submit": 5, "demo_request": 20, "unsubscribe": -10}
MIX = {
    "page_view": 0.60,
    "email_open": 0.20,
    "form_submit": 0.10,
    "demo_request": 0.03,
    "unsubscribe": 0.05,
    "video_play": 0.02,
}
LEVELS = [("Cold", 0, 9), ("Warm", 10, 49), ("Hot", 50, None)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--leads", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2, help="`leadpulse worker` processes (default 2)")
    p.add_argument("--slots", type=int, default=None, help="LEADPULSE_SCORING_PARALLELISM (default: = --workers)")
    p.add_argument("--batch", type=int, default=None, help="LEADPULSE_SCORE_BATCH (default: the app's default)")
    p.add_argument("--target-rate", type=float, default=5000.0)
    p.add_argument("--target-mb", type=float, default=300.0)
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds of scoring")
    p.add_argument("--seed", type=int, default=20240601)
    common.run_flags(p, DEFAULT_DB)
    return p.parse_args(argv)


def configure_tenant(env: dict, cred: dict) -> None:
    """This benchmark's levels and rules, published."""
    common.configure_scoring(env, cred, LEVELS, RULES)


def generate(n_events: int, n_leads: int, seed: int):
    """(lead index, event_type, occurred_at) in insertion order; ids follow this order."""
    rng = random.Random(seed)
    types, weights = list(MIX), list(MIX.values())
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=31)
    span = 30 * 86400 * 1_000_000
    kinds = rng.choices(types, weights, k=n_events)
    # Every lead gets at least one event (a lead only exists because an event named it); the rest are uniform.
    first = list(range(n_leads))
    rng.shuffle(first)
    leads = first[:n_events] + [rng.randrange(n_leads) for _ in range(n_events - min(n_events, n_leads))]
    rng.shuffle(leads)
    return [(leads[i], kinds[i], base + timedelta(microseconds=rng.randrange(span))) for i in range(n_events)]


def lead_id_of(i: int, n_leads: int) -> str:
    """lead-00042: five digits, more where the leads need them (lpad would cut lead 100000 to lead-10000)."""
    return f"lead-{i:0{max(5, len(str(n_leads - 1)))}d}"


def load_pending(db: str, cred: dict, events: list, n_leads: int) -> dict[int, int]:
    """Leads and pending events, set-based, consistent with models.ingest: returns lead index -> pk."""
    import psycopg

    now = datetime.now(UTC)
    with psycopg.connect(common.libpq_dsn(db)) as conn:
        conn.execute(
            "INSERT INTO leads (org_id, unit_id, lead_id, metadata, score, created_at, updated_at) "
            "SELECT %(org)s, %(unit)s, 'lead-' || lpad(g::text, %(width)s, '0'), '{}'::jsonb, 0, %(now)s, %(now)s "
            "FROM generate_series(0, %(n)s - 1) AS g ORDER BY g",
            {
                "org": cred["org_id"],
                "unit": cred["unit_id"],
                "now": now,
                "n": n_leads,
                "width": len(lead_id_of(0, n_leads)) - 5,
            },
        )
        pks = {
            int(lead_id[5:]): pk
            for pk, lead_id in conn.execute("SELECT pk, lead_id FROM leads WHERE unit_id = %s", (cred["unit_id"],))
        }
        with conn.cursor().copy(
            "COPY events (org_id, unit_id, lead_pk, event_type, occurred_at, received_at, metadata, status) FROM STDIN"
        ) as copy:
            for i, (lead, kind, at) in enumerate(events):
                copy.write_row((cred["org_id"], cred["unit_id"], pks[lead], kind, at, now, json.dumps({"i": i}), 0))
    with psycopg.connect(common.libpq_dsn(db), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE leads")
        conn.execute("VACUUM ANALYZE events")
    return pks


def expected_scores(events: list) -> dict[int, int]:
    """Replay in (occurred_at, id) order with the floor at 0, as the design says scores work."""
    by_lead = defaultdict(list)
    for i, (lead, kind, at) in enumerate(events):
        by_lead[lead].append((at, i, kind))
    out = {}
    for lead, evs in by_lead.items():
        score = 0
        for _, _, kind in sorted(evs):
            if kind in RULES:
                score = max(0, score + RULES[kind])
        out[lead] = score
    return out


def classify(score: int) -> str | None:
    for name, lo, hi in LEVELS:
        if lo <= score and (hi is None or score <= hi):
            return name
    return None


class MemorySampler(threading.Thread):
    """Peak memory of each worker's process tree (worker + forked work-horse), sampled from /proc."""

    def __init__(self, pids: list[int], interval: float = 0.05, services=None):
        super().__init__(daemon=True)
        self.services = services  # a common.ServiceCpu to keep sampling (backends that exit keep their CPU)
        self.pids, self.interval = pids, interval
        self.peak_rss = {p: 0 for p in pids}  # kB, sum of VmRSS over the tree at one instant
        self.peak_pss = {p: 0 for p in pids}  # kB, sum of Pss (shared fork pages counted once)
        self.hwm = {p: {} for p in pids}  # kB, VmHWM per process of the tree (parent and each horse)
        self.stop_flag = threading.Event()

    def sample(self, with_pss: bool) -> None:
        for root in self.pids:
            tree = [root] + common.children_of(root)
            self.peak_rss[root] = max(self.peak_rss[root], sum(common.status_kb(p, "VmRSS") for p in tree))
            for p in tree:
                self.hwm[root][p] = max(self.hwm[root].get(p, 0), common.status_kb(p, "VmHWM"))
            if with_pss:
                self.peak_pss[root] = max(self.peak_pss[root], sum(common.pss_kb(p) for p in tree))
        if with_pss and self.services is not None:
            self.services.sample()

    def run(self):
        n = 0
        while not self.stop_flag.is_set():
            self.sample(with_pss=n % 5 == 0)
            n += 1
            self.stop_flag.wait(self.interval)

    def stop(self):
        self.stop_flag.set()
        self.join()
        self.sample(with_pss=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    slots = args.slots or args.workers
    import psycopg
    from redis import Redis

    log(f"fresh database {args.db}, migrate, bootstrap, configure levels and a published primary ruleset")
    common.recreate_database(args.db)
    common.flush_redis(REDIS_DB)
    extra = {"LEADPULSE_SCORING_PARALLELISM": slots}
    if args.batch:
        extra["LEADPULSE_SCORE_BATCH"] = args.batch
    env = common.app_env(args.db, REDIS_DB, QUEUE, **extra)
    cred = common.migrate_and_bootstrap(env)
    configure_tenant(env, cred)

    events = generate(args.events, args.leads, args.seed)
    t = time.perf_counter()
    pks = load_pending(args.db, cred, events, args.leads)
    log(f"loaded {len(events)} pending events over {len(pks)} leads in {time.perf_counter() - t:.1f}s (COPY)")

    from integrations.redis_keys import SCORE_SLOT
    from worker.jobs import kick_scoring

    redis = Redis.from_url(f"{common.REDIS_BASE}/{REDIS_DB}")
    # Hold the slot flags so the workers' start-up sweep cannot start scoring before both are registered.
    for slot in range(slots):
        redis.set(SCORE_SLOT(slot=slot), "bench-hold", ex=300)  # until deleted below

    logdir = Path(tempfile.mkdtemp(prefix="leadpulse-bench-scoring-"))
    procs = [common.start([common.LEADPULSE, "worker"], env, logdir / f"worker{i}.log") for i in range(args.workers)]
    sampler = None
    result = {}
    try:
        from rq import Queue, Worker

        queue = Queue(QUEUE, connection=redis)
        deadline = time.monotonic() + 60
        while Worker.count(connection=redis, queue=queue) < args.workers:
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise SystemExit(
                    "workers did not start: "
                    + " ".join((logdir / f"worker{i}.log").read_text()[-2000:] for i in range(args.workers))
                )
            time.sleep(0.05)
        log(f"{args.workers} workers registered (logs in {logdir}); kicking {slots} scoring slots")
        poll = psycopg.connect(common.libpq_dsn(args.db), autocommit=True)
        self_cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        services = common.ServiceCpu(args.db)
        sampler = MemorySampler([p.pid for p in procs], services=services)
        sampler.start()
        cpu0 = (common.machine_busy(), sum(common.tree_cpu_seconds(p.pid) for p in procs), self_cpu())
        t0, started = time.perf_counter(), time.monotonic()
        for slot in range(slots):
            redis.delete(SCORE_SLOT(slot=slot))
        kick_scoring(redis, QUEUE, slots)
        # A cheap EXISTS on the partial pending index every 25 ms ends the clock; a full count (which would
        # itself load the database) only every 2 s, to notice a stall.
        last, last_change, next_count = None, time.monotonic(), time.monotonic() + 2
        while poll.execute("SELECT EXISTS (SELECT 1 FROM events WHERE status = 0)").fetchone()[0]:
            now = time.monotonic()
            if now >= next_count:
                pending = poll.execute("SELECT count(*) FROM events WHERE status = 0").fetchone()[0]
                next_count = now + 2
                if pending != last:
                    last, last_change = pending, now
                if now - last_change > 120 or now - started > args.timeout:
                    raise SystemExit(f"scoring stalled with {pending} events pending; see {logdir}")
            if any(p.poll() is not None for p in procs):
                raise SystemExit(f"a worker exited during scoring; see {logdir}")
            time.sleep(0.025)
        elapsed = time.perf_counter() - t0
        cpu1 = (common.machine_busy(), sum(common.tree_cpu_seconds(p.pid) for p in procs), self_cpu())
        sampler.stop()
        svc = services.totals()
        failed = len(queue.failed_job_registry)
        log(f"all events scored in {elapsed:.2f}s; {failed} failed jobs")
        machine = elapsed * (os.cpu_count() or 1)
        (b0, tot0), (b1, tot1) = cpu0[0], cpu1[0]
        busy_pct = 100.0 * (b1 - b0) / max(1, tot1 - tot0)
        worker_cpu = cpu1[1] - cpu0[1]
        pg_cpu, redis_cpu = svc["postgres"], svc["redis-server"]
        result.update(
            seconds=elapsed,
            rate=args.events / elapsed,
            failed_jobs=failed,
            machine_busy_pct=busy_pct,
            worker_cpu_us_per_event=1e6 * worker_cpu / args.events,
            postgres_cpu_us_per_event=1e6 * pg_cpu / args.events,
            redis_cpu_us_per_event=1e6 * redis_cpu / args.events,
            bench_pct=100.0 * (cpu1[2] - cpu0[2]) / machine,
            background_pct=max(0.0, busy_pct - 100.0 * (worker_cpu + pg_cpu + redis_cpu + cpu1[2] - cpu0[2]) / machine),
        )
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        for p in procs:
            common.stop(p, timeout=30)
        log("workers stopped")

    # Correctness: every lead's score and level against a replay of what was inserted.
    expected = expected_scores(events)
    problems = []
    with psycopg.connect(common.libpq_dsn(args.db)) as conn:
        rows = conn.execute(
            "SELECT l.pk, l.score, lv.name, ls.score FROM leads l LEFT JOIN engagement_levels lv ON lv.id = l.level_id "
            "LEFT JOIN lead_scores ls ON ls.lead_pk = l.pk AND ls.ruleset_id = "
            "(SELECT id FROM rulesets WHERE unit_id = l.unit_id AND is_primary) WHERE l.unit_id = %s",
            (cred["unit_id"],),
        ).fetchall()
        status = dict(conn.execute("SELECT status, count(*) FROM events GROUP BY status").fetchall())
        deltas = conn.execute("SELECT count(*) FROM score_deltas").fetchone()[0]
        changes = conn.execute("SELECT count(*) FROM lead_level_changes").fetchone()[0]
    pk_to_lead = {pk: lead for lead, pk in pks.items()}
    for pk, score, level, ruleset_score in rows:
        want = expected.get(pk_to_lead[pk], 0)
        if score != want or (ruleset_score or 0) != want or level != classify(want):
            problems.append((pk_to_lead[pk], score, ruleset_score, level, want, classify(want)))
    scored_types = sum(1 for _, kind, _ in events if kind in RULES)
    if status.get(1, 0) != args.events:
        problems.append(("events status", status))
    if deltas != scored_types:
        problems.append(("score_deltas", deltas, "expected", scored_types))
    correct = not problems

    redis.flushdb()
    if not args.keep_db:
        common.drop_database(args.db)

    mb = lambda kb: kb / 1024
    peaks = [mb(sampler.peak_rss[p.pid]) for p in procs]
    pss = [mb(sampler.peak_pss[p.pid]) for p in procs]
    hwm_parent = [mb(sampler.hwm[p.pid].get(p.pid, 0)) for p in procs]
    hwm_horse = [mb(max([v for k, v in sampler.hwm[p.pid].items() if k != p.pid] or [0])) for p in procs]
    ok_rate = result["rate"] >= args.target_rate
    ok_mem = max(peaks) < args.target_mb
    ok = ok_rate and ok_mem and correct and result["failed_jobs"] == 0
    print()
    print(
        f"scoring benchmark: {args.workers} x `leadpulse worker` on PostgreSQL, {slots} scoring slots, "
        f"batch {args.batch or 'default'}; targets >= {args.target_rate:.0f} events/s and < {args.target_mb:.0f} MB per worker"
    )
    print(
        common.table(
            ["events", "leads", "workers", "seconds", "events/s", "peak RSS per worker (MB)", "result"],
            [
                [
                    args.events,
                    args.leads,
                    args.workers,
                    f"{result['seconds']:.2f}",
                    f"{result['rate']:.0f}",
                    " / ".join(f"{x:.0f}" for x in peaks),
                    "PASS" if ok else "FAIL",
                ]
            ],
        )
    )
    print(
        f"memory detail (MB, per worker): peak tree RSS {' / '.join(f'{x:.0f}' for x in peaks)} "
        f"(worker + work-horse summed; shared fork pages counted twice), peak tree PSS {' / '.join(f'{x:.0f}' for x in pss)}, "
        f"VmHWM worker {' / '.join(f'{x:.0f}' for x in hwm_parent)}, largest work-horse {' / '.join(f'{x:.0f}' for x in hwm_horse)}"
    )
    print(
        f"rate {'PASS' if ok_rate else 'FAIL'}, memory {'PASS' if ok_mem else 'FAIL'}, "
        f"correctness {'PASS' if correct else 'FAIL'} ({len(rows)} leads checked against a replay, {deltas} score deltas, "
        f"{changes} level changes, {result['failed_jobs']} failed jobs)"
    )
    print(
        f"cpu: machine busy {result['machine_busy_pct']:.0f}%; per event: workers {result['worker_cpu_us_per_event']:.0f} us, "
        f"postgres {result['postgres_cpu_us_per_event']:.0f} us, redis {result['redis_cpu_us_per_event']:.1f} us; "
        f"this script's polling and sampling {result['bench_pct']:.0f}% of the machine; "
        f"other processes (not this benchmark) {result['background_pct']:.0f}% of the machine"
    )
    for p in problems[:10]:
        print("  mismatch:", p)
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    **result,
                    "events": args.events,
                    "leads": args.leads,
                    "workers": args.workers,
                    "slots": slots,
                    "peak_rss_mb": peaks,
                    "peak_pss_mb": pss,
                    "hwm_worker_mb": hwm_parent,
                    "hwm_horse_mb": hwm_horse,
                    "correct": correct,
                    "problems": [str(p) for p in problems[:50]],
                    "pass": ok,
                },
                indent=2,
            )
        )
    # A missed target is a result, not a crash: `make bench` goes on unless --strict; wrong scores always fail.
    sound = correct and result["failed_jobs"] == 0
    return 0 if sound and (ok or not args.strict) else 1


if __name__ == "__main__":
    sys.exit(main())
