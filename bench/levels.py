"""Level edits that reclassify a whole OU: 1,000,000 leads moved by one `PUT /engagement-levels/{id}`.

    python bench/levels.py [--leads 1000000] [--target 10]

A fresh PostgreSQL database is migrated and bootstrapped with the `leadpulse` CLI, and the reference's four tiers
are created through the API (Flask test client of the real app). The leads are then inserted set-based with
scores spread evenly over 0..99 (as if scored), all unclassified. Each step is one real API call, timed from the
request to its answer (the reclassification is part of the request: the answer comes after every lead is in its
new level and every move is recorded):

1. `PUT` Cold with its range unchanged: every lead of the OU is classified (1,000,000 moves);
2. `PUT` Warm to a wider range: the leads between the old and the new bound move (~20%);
3. `DELETE` Hot: its leads fall to no level (Unclassified);
4. `POST /engagement-levels/history/{entryID}/revert` to the table after step 1: Hot comes back under its own id,
   Warm narrows again, and the leads of both ranges move back (~35%).

After each step every lead's level is checked against its score, and the moves recorded (each row of a
reclassification counts the leads it moved between two levels) against the count. The target is each step under 10 s.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import log

DEFAULT_DB = "leadpulse_bench_levels"
REDIS_DB = 12
QUEUE = "leadpulse-bench-levels"
TIERS = [("Cold", 0, 24), ("Warm", 25, 49), ("Hot", 50, 74), ("On Fire", 75, None)]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--leads", type=int, default=1_000_000)
    p.add_argument("--target", type=float, default=10.0, help="seconds per step")
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    return p.parse_args(argv)


def insert_leads(db: str, unit_id: str, n: int) -> None:
    """n leads, scores 0..99 in turn, unclassified: one INSERT ... SELECT."""
    import psycopg

    with psycopg.connect(common.libpq_dsn(db), autocommit=True) as conn:
        org_id = conn.execute("SELECT org_id FROM org_units WHERE id = %s", (unit_id,)).fetchone()[0]
        conn.execute(
            """INSERT INTO leads (org_id, unit_id, lead_id, metadata, score, created_at, updated_at)
               SELECT %s, %s, 'lead-' || i, '{}', (i * 37) %% 100, now(), now() FROM generate_series(1, %s) AS i""",
            (org_id, unit_id, n),
        )
        conn.execute("ANALYZE leads")


def check(db: str, unit_id: str, levels: list[tuple[str, int, int | None]]) -> tuple[int, dict[str, int]]:
    """(leads whose level is not the one their score falls in, leads per level name)."""
    import psycopg

    ranges = " ".join(
        f"WHEN l.score >= {lo}" + (f" AND l.score <= {hi}" if hi is not None else "") + f" THEN '{name}'"
        for name, lo, hi in levels
    )
    with psycopg.connect(common.libpq_dsn(db)) as conn:
        wrong = conn.execute(
            f"""SELECT count(*) FROM leads l LEFT JOIN engagement_levels lv ON lv.id = l.level_id
                WHERE l.unit_id = %s AND lv.name IS DISTINCT FROM (CASE {ranges} ELSE NULL END)""",
            (unit_id,),
        ).fetchone()[0]
        per_level = dict(
            conn.execute(
                """SELECT coalesce(lv.name, 'Unclassified'), count(*) FROM leads l
                   LEFT JOIN engagement_levels lv ON lv.id = l.level_id WHERE l.unit_id = %s GROUP BY 1""",
                (unit_id,),
            ).fetchall()
        )
    return wrong, per_level


def moves_recorded(db: str, unit_id: str) -> int:
    """Leads moved, as recorded (a reclassification's row counts the leads it moved from one level to another)."""
    import psycopg

    with psycopg.connect(common.libpq_dsn(db)) as conn:
        return conn.execute(
            "SELECT coalesce(sum(leads), 0) FROM lead_level_changes WHERE unit_id = %s", (unit_id,)
        ).fetchone()[0]


def main(argv=None) -> int:
    args = parse_args(argv)
    common.recreate_database(args.db)
    common.flush_redis(REDIS_DB)
    env = common.app_env(args.db, REDIS_DB, QUEUE)
    cred = common.migrate_and_bootstrap(env)
    unit_id = cred["unit_id"]
    call = common.api(env, cred)
    ids = {
        name: call("POST", "/engagement-levels", {"name": name, "min_score": lo, "max_score": hi})["id"]
        for name, lo, hi in TIERS
    }
    log(f"inserting {args.leads:,} leads")
    insert_leads(args.db, unit_id, args.leads)
    common.analyze_like_autovacuum(args.db)

    levels = list(TIERS)
    steps = [
        ("classify every lead (PUT Cold, same range)", "PUT", "Cold", {"min_score": 0, "max_score": 24}),
        ("widen Warm to 15..49 (PUT)", "PUT", "Warm", {"min_score": 15, "max_score": 49}),
        ("delete Hot: its leads unclassified", "DELETE", "Hot", None),
        ("revert to the table after step 1 (POST .../revert)", "REVERT", None, None),
    ]
    first_table = None
    rows, failed = [], False
    before = moves_recorded(args.db, unit_id)
    for label, method, name, body in steps:
        if method == "PUT":
            lo, hi = body["min_score"], body["max_score"]
            levels = [(n, lo, hi) if n == name else (n, a, b) for n, a, b in levels]
            if name == "Warm":  # Cold shrinks first so the ranges never overlap
                call("PUT", f"/engagement-levels/{ids['Cold']}", {"name": "Cold", "min_score": 0, "max_score": lo - 1})
                levels = [(n, 0, lo - 1) if n == "Cold" else (n, a, b) for n, a, b in levels]
                before = moves_recorded(args.db, unit_id)
            body = {"name": name, **body}
        elif method == "DELETE":
            levels = [lv for lv in levels if lv[0] != name]
        else:
            levels = list(TIERS)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t0 = time.perf_counter()
        if method == "REVERT":
            call("POST", f"/engagement-levels/history/{first_table}/revert")
        else:
            call(method, f"/engagement-levels/{ids[name]}", body, expect=(200, 204))
        seconds = time.perf_counter() - t0
        first_table = first_table or call("GET", "/engagement-levels/history?limit=1")["history"][0]["id"]
        growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
        wrong, per_level = check(args.db, unit_id, levels)
        after = moves_recorded(args.db, unit_id)
        ok = wrong == 0 and seconds < args.target
        failed |= not ok
        rows.append(
            [
                label,
                f"{after - before:,}",
                f"{seconds:.2f}",
                f"{growth:.1f}",
                wrong,
                ", ".join(f"{k} {v:,}" for k, v in sorted(per_level.items())),
                "PASS" if ok else "FAIL",
            ]
        )
        before = after
        log(f"{label}: {seconds:.2f} s")
    print(f"bench/levels.py: {args.leads:,} leads in one OU, target < {args.target:g} s per step; {common.git_head()}")
    print(common.machine_facts())
    print(common.table(["step", "moves", "seconds", "peak RSS growth MB", "misfiled", "leads per level", ""], rows))
    if not args.keep_db:
        common.drop_database(args.db)
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
