"""History and rankings on a large OU: every read of docs/history.md timed through the real API.

    python bench/history.py [--leads 1000000] [--events 3000000] [--days 120]

A fresh PostgreSQL database is migrated and bootstrapped with the `leadpulse` CLI, and a primary ruleset is
published through the API. The leads and their scored events are then inserted set-based, as if scored: events
spread evenly over the last `--days` days in arrival order (ids rise with time, as ingestion makes them), a quarter
of them `DECAY` (-3), the others +5, each with its `score_deltas` row. Each read is one API call (Flask test client of
the real app), timed to its answer, twice (the second on a warm cache).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import log

DEFAULT_DB = "leadpulse_bench_history"
REDIS_DB = 11
QUEUE = "leadpulse-bench-history"
READS = [
    "/lead/lead-1/score-history?days=90",
    "/top-leads?limit=100",
    "/event-stats",
    *(f"/score-gains?range={r}&limit=100" for r in ("last_24h", "last_7d", "last_30d", "last_90d")),
    *(f"/events-analytics?range={r}" for r in ("last_24h", "last_7d", "last_30d", "last_90d")),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--leads", type=int, default=1_000_000)
    p.add_argument("--events", type=int, default=3_000_000)
    p.add_argument("--days", type=int, default=120)
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--keep-db", action="store_true")
    return p.parse_args(argv)


def insert_history(db: str, unit_id: str, ruleset_id: str, leads: int, events: int, days: int) -> None:
    """The leads, their events (oldest first) and one delta each on the ruleset: three INSERT ... SELECTs."""
    import psycopg

    with psycopg.connect(common.libpq_dsn(db), autocommit=True) as conn:
        org_id = conn.execute("SELECT org_id FROM org_units WHERE id = %s", (unit_id,)).fetchone()[0]
        conn.execute("SET synchronous_commit = off")
        conn.execute(
            """INSERT INTO leads (org_id, unit_id, lead_id, metadata, score, created_at, updated_at)
               SELECT %s, %s, 'lead-' || i, '{}', (i * 37) %% 500, now(), now() FROM generate_series(1, %s) AS i""",
            (org_id, unit_id, leads),
        )
        first = conn.execute("SELECT min(pk) FROM leads WHERE unit_id = %s", (unit_id,)).fetchone()[0]
        conn.execute(
            """INSERT INTO events (org_id, unit_id, lead_pk, event_type, occurred_at, received_at, metadata, status,
                                   quiet)
               SELECT %(org)s, %(unit)s, %(first)s + (i::bigint * 7919) %% %(leads)s,
                      CASE WHEN i %% 4 = 0 THEN 'DECAY' ELSE (ARRAY['page_view', 'email_open', 'demo_request'])[1 + i %% 3] END,
                      now() - make_interval(days => %(days)s) * (1 - i::float8 / %(events)s), now(), '{}', 1, false
                 FROM generate_series(1, %(events)s) AS i""",
            dict(org=org_id, unit=unit_id, first=first, leads=leads, events=events, days=days),
        )
        conn.execute(
            """INSERT INTO score_deltas (event_id, ruleset_id, lead_pk, delta, score_after)
               SELECT id, %s, lead_pk, CASE WHEN event_type = 'DECAY' THEN -3 ELSE 5 END, 0
                 FROM events WHERE unit_id = %s""",
            (ruleset_id, unit_id),
        )
        conn.execute("ANALYZE")


def main(argv=None) -> int:
    args = parse_args(argv)
    common.recreate_database(args.db)
    common.flush_redis(REDIS_DB)
    env = common.app_env(args.db, REDIS_DB, QUEUE)
    cred = common.migrate_and_bootstrap(env)
    call = common.api(env, cred)
    ruleset = call("POST", "/rulesets", {"name": "Main", "is_primary": True})["ruleset_id"]
    call("POST", f"/rulesets/{ruleset}/publish")
    log(f"inserting {args.leads:,} leads and {args.events:,} scored events over {args.days} days")
    insert_history(args.db, cred["unit_id"], ruleset, args.leads, args.events, args.days)
    rows = []
    for path in READS:
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            call("GET", path)
            times.append(time.perf_counter() - t0)
        rows.append([path, f"{times[0]:.2f}", f"{times[1]:.2f}"])
        log(f"{path}: {times[0]:.2f} s, {times[1]:.2f} s")
    load = os.getloadavg()
    print(
        f"bench/history.py: {args.leads:,} leads, {args.events:,} events over {args.days} days in one OU; "
        f"{common.git_head()}; load average {load[0]:.1f}"
    )
    print(common.machine_facts())
    print(common.table(["read", "seconds (cold)", "seconds (warm)"], rows))
    if not args.keep_db:
        common.drop_database(args.db)
    return 0


if __name__ == "__main__":
    sys.exit(main())
