"""Rescore preview, backtest and publish over 1,000,000 stored events of one OU, each timed in a process of its own.

    python bench/backtest.py [--events 1000000] [--leads 100000]

A fresh PostgreSQL database is migrated and bootstrapped with the `leadpulse` CLI; levels and a published primary
ruleset are created through the API. The events (already scored, 1% of them `deal_won`) and their leads are then
inserted by SQL; the leads keep score 0, as the preview's work does not depend on what it compares against (with
--publish the primary is published again first, and publishing the draft is timed too). A draft with other weights
is then previewed (`as_primary`) and backtested against `deal_won`, each as one request to the real app (Flask test
client) in a fresh Python process, whose peak RSS (ru_maxrss) is reported beside its baseline (the app loaded,
before the request). Targets: under 30 s each, and memory that does not grow with the OU (compare --events 200000).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import log

DEFAULT_DB = "leadpulse_bench_backtest"
REDIS_DB = 12
QUEUE = "leadpulse-bench-backtest"
LEVELS = [("Cold", 0, 24), ("Warm", 25, 49), ("Hot", 50, 74), ("Very Hot", 75, None)]
RULES = {"page_view": 1, "email_open": 2, "form_submit": 5, "demo_request": 20, "unsubscribe": -10}
DRAFT = {"page_view": 2, "email_open": 1, "form_submit": 10, "demo_request": 15, "unsubscribe": -20, "deal_won": 5}
# event type, share of the generated events (cumulative bounds for a random() in SQL)
MIX = [("page_view", 0.60), ("email_open", 0.20), ("form_submit", 0.10), ("demo_request", 0.04), ("unsubscribe", 0.05)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--leads", type=int, default=100_000)
    p.add_argument("--target-seconds", type=float, default=30.0)
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--keep-db", action="store_true")
    p.add_argument(
        "--publish",
        action="store_true",
        help="also publish the primary before (so the leads hold their scores) and time publishing the draft",
    )
    p.add_argument("--measure", choices=["preview", "backtest", "publish"], help=argparse.SUPPRESS)
    p.add_argument("--cred", help=argparse.SUPPRESS)
    p.add_argument("--draft", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def seed(db: str, unit_id: str, org_id: str, n_events: int, n_leads: int) -> None:
    """Leads and scored events by SQL: ids in time order per lead do not matter, the replay orders them."""
    import psycopg

    case = " ".join(f"WHEN r < {bound:.4f} THEN '{name}'" for name, bound in _cumulative())
    with psycopg.connect(common.libpq_dsn(db), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO leads (org_id, unit_id, lead_id, metadata, score, created_at, updated_at) "
            "SELECT %s, %s, 'lead-' || g, '{}', 0, now(), now() FROM generate_series(1, %s) g",
            (org_id, unit_id, n_leads),
        )
        conn.execute(
            "INSERT INTO events (org_id, unit_id, lead_pk, event_type, occurred_at, received_at, metadata, status, "
            "scored_at, quiet) "
            f"SELECT %s, %s, l.pk, CASE {case} ELSE 'deal_won' END, "
            "now() - interval '60 days' + (g::float / %s) * interval '59 days', now(), '{}', 1, now(), false "
            "FROM (SELECT g, random() AS r, 1 + (g::bigint * 7919) %% %s AS n FROM generate_series(1, %s) g) x "
            "JOIN leads l ON l.unit_id = %s AND l.lead_id = 'lead-' || x.n",
            (org_id, unit_id, n_events, n_leads, n_events, unit_id),
        )
        conn.execute("ANALYZE")


def _cumulative():
    total = 0.0
    for name, share in MIX:
        total += share
        yield name, total


def measure(args) -> None:
    """One request in this fresh process: its time and this process's peak memory against the app's baseline."""
    cred = json.loads(args.cred)
    env = common.app_env(args.db, REDIS_DB, QUEUE)
    call = common.api(env, cred)
    call("GET", "/rulesets")  # the app and a connection ready: the baseline
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    path, body = {
        "preview": (f"/rulesets/{args.draft}/rescore-preview", {"as_primary": True}),
        "backtest": (f"/rulesets/{args.draft}/backtest", {"outcome": {"event_type": "deal_won"}}),
        "publish": (f"/rulesets/{args.draft}/publish", None),
    }[args.measure]
    started, cpu = time.monotonic(), _cpu()
    out = call("POST", path, body)
    seconds, cpu = time.monotonic() - started, _cpu() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {
        k: out[k] for k in ("score_changes", "level_changes", "rescored_leads", "leads", "events_replayed") if k in out
    }
    print(json.dumps({"seconds": seconds, "cpu": cpu, "baseline_mb": baseline, "peak_mb": peak, "answer": summary}))


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.measure:
        measure(args)
        return 0
    common.recreate_database(args.db)
    common.flush_redis(REDIS_DB)
    env = common.app_env(args.db, REDIS_DB, QUEUE)
    cred = common.migrate_and_bootstrap(env)
    common.configure_scoring(env, cred, LEVELS, RULES)
    call = common.api(env, cred)
    primary = call("GET", "/rulesets")[0]["ruleset_id"]
    draft = call("POST", "/rulesets", {"name": "Draft"})["ruleset_id"]
    for event_type, weight in DRAFT.items():
        call("POST", "/rules", {"ruleset_id": draft, "event_type": event_type, "weight": weight})
    log(f"seeding {args.leads:,} leads and {args.events:,} events")
    seed(args.db, cred["unit_id"], cred["org_id"], args.events, args.leads)
    if args.publish:
        started = time.monotonic()
        call("POST", f"/rulesets/{primary}/publish")
        log(f"primary published in {time.monotonic() - started:.1f} s")
    rows, failed = [], False
    for what in ("preview", "backtest", "publish") if args.publish else ("preview", "backtest"):
        if what == "publish":  # the heaviest publish: of the primary, every lead's score and level rewritten
            call("PUT", f"/rulesets/{draft}", {"is_primary": True})
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--measure",
                what,
                "--db",
                args.db,
                "--cred",
                json.dumps(cred),
                "--draft",
                draft,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        ok = result["seconds"] < args.target_seconds
        failed |= not ok
        rows.append(
            [
                what,
                f"{result['seconds']:.1f} s ({result['cpu']:.1f} s CPU here)",
                f"{result['peak_mb'] - result['baseline_mb']:.0f} MB over {result['baseline_mb']:.0f} MB",
                json.dumps(result["answer"]),
                "ok" if ok else "FAIL",
            ]
        )
    print(common.table(["request", "time", "peak RSS", "answer", f"< {args.target_seconds:.0f} s"], rows))
    if not args.keep_db:
        common.drop_database(args.db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
