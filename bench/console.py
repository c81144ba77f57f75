"""The console's Leads page and a lead's page on a large OU: server time per request, p95 under 300 ms.

    python bench/console.py [--leads 1000000] [--events 10000000] [--requests 40] [--reuse]

A fresh PostgreSQL database is migrated and bootstrapped with the `leadpulse` CLI (with an Owner who signs in), the
reference's four levels, a published primary ruleset and a decay rule are created through the API, and then the OU
is loaded set-based, as if scored: leads with scores spread over the four levels (about half Cold, a tenth Very Hot)
and their level; an email alias for most of them and a CRM id for some; events in arrival order over 180 days (ids
rise with time), each lead drawn with a skew so that a fifth of the leads have none, most have a few to a few hundred
and a handful thousands (the most active about 11,000), each event with its score delta, and each lead's last
activity from its events. Loading 10,000,000 events takes ~20 minutes and 7 GB: `--reuse` keeps the database
and, when it already holds the data set asked for, only migrates it (so a new index is built) and measures again.

Each request is a GET through the real app in this process (Flask test client, signed in through the sign-in form
with the session cookie it sets), timed around the WSGI call; every answer must be a 200 (and a search that should
find leads must show some). Per page: requests, p50, p95, max against the target.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import log

DEFAULT_DB = "leadpulse_bench_console"
REDIS_DB = 8
QUEUE = "leadpulse-bench-console"
MEMBER = ("bench@example.com", "bench-console-password-1")
TIERS = [("Cold", 0, 24), ("Warm", 25, 49), ("Hot", 50, 74), ("Very Hot", 75, None)]
RULES = {"page_view": 5, "email_open": 2, "email_click": 4, "form_submit": 15, "demo_request": 30}
# Event types by i % 20 (DECAY: the decay pass's -5), so page views dominate as on a real site.
TYPES = ["page_view"] * 12 + ["email_open"] * 3 + ["email_click"] * 2 + ["form_submit", "demo_request", "DECAY"]
FIRST_NAMES = ["anna", "ben", "carla", "david", "elena", "felix", "greta", "hugo", "ines", "jonas", "karin", "liam"]
LAST_NAMES = ["berg", "costa", "dahl", "evans", "fischer", "garcia", "hansen", "ivanov", "jensen", "kowalski"]
DOMAINS = ["example.com", "acme.io", "globex.net", "initech.org", "umbrella.co", "hooli.com", "stark.dev"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--leads", type=int, default=1_000_000)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=180)
    p.add_argument("--requests", type=int, default=40, help="timed requests per page (after 2 untimed)")
    p.add_argument("--target-ms", type=float, default=300.0, help="p95 server time per request")
    p.add_argument("--reuse", action="store_true", help="keep the database; load it only if it lacks the data set")
    common.run_flags(p, DEFAULT_DB)
    return p.parse_args(argv)


def sql_array(values: list[str]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]"


def load(db: str, unit_id: str, leads: int, events: int, days: int) -> None:
    """The leads, aliases, events, score deltas and lead scores: INSERT ... SELECTs, foreign keys unchecked (the
    values are made consistent here), then the leads' last activity from their events and VACUUM ANALYZE."""
    import psycopg

    with psycopg.connect(common.libpq_dsn(db), autocommit=True) as conn:
        org_id = conn.execute("SELECT org_id FROM org_units WHERE id = %s", (unit_id,)).fetchone()[0]
        ruleset = conn.execute("SELECT id FROM rulesets WHERE unit_id = %s AND is_primary", (unit_id,)).fetchone()[0]
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET session_replication_role = replica")  # no FK trigger per row: the ids are made to match
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute("SET work_mem = '256MB'")
        unit = dict(org=org_id, unit=unit_id, leads=leads, events=events, days=days, ruleset=ruleset)
        log(f"{leads:,} leads")
        # h: a fixed pseudo-random spread of i over [0, 1); the score follows the level shares above.
        conn.execute(
            """INSERT INTO leads (org_id, unit_id, lead_id, metadata, score, level_id, created_at, updated_at)
               SELECT %(org)s::varchar, %(unit)s::varchar, 'lead-' || i, '{"source": "bench"}', s.score,
                      (SELECT lv.id FROM engagement_levels lv WHERE lv.unit_id = %(unit)s::varchar AND s.score >= lv.min_score
                          AND (lv.max_score IS NULL OR s.score <= lv.max_score)),
                      now() - make_interval(days => %(days)s) * h, now()
                 FROM generate_series(1, %(leads)s) AS i,
                      LATERAL (SELECT ((i::bigint * 2654435761) %% 1000003) / 1000003.0 AS h) AS r,
                      LATERAL (SELECT CASE WHEN h < 0.50 THEN floor(h / 0.50 * 25)
                                           WHEN h < 0.78 THEN 25 + floor((h - 0.50) / 0.28 * 25)
                                           WHEN h < 0.92 THEN 50 + floor((h - 0.78) / 0.14 * 25)
                                           ELSE 75 + floor((h - 0.92) / 0.08 * 225) END::bigint AS score) AS s""",
            unit,
        )
        first = conn.execute("SELECT min(pk) FROM leads WHERE unit_id = %s", (unit_id,)).fetchone()[0]
        unit["first"] = first
        conn.execute(
            """INSERT INTO lead_scores (lead_pk, ruleset_id, unit_id, score, updated_at)
               SELECT pk, %(ruleset)s::varchar, %(unit)s::varchar, score, now() FROM leads WHERE unit_id = %(unit)s::varchar""",
            unit,
        )
        log("aliases: an email for 70% of the leads, a CRM id for 15%, a second email for 2%")
        conn.execute(
            f"""INSERT INTO lead_aliases (unit_id, lead_pk, kind, value, created_at)
               SELECT %(unit)s::varchar, %(first)s + i - 1, 'email',
                      ({sql_array(FIRST_NAMES)})[1 + i %% {len(FIRST_NAMES)}] || '.'
                      || ({sql_array(LAST_NAMES)})[1 + (i / {len(FIRST_NAMES)}) %% {len(LAST_NAMES)}] || i || '@'
                      || ({sql_array(DOMAINS)})[1 + (i * 7) %% {len(DOMAINS)}], now()
                 FROM generate_series(1, %(leads)s) AS i WHERE i %% 10 < 7
               UNION ALL
               SELECT %(unit)s::varchar, %(first)s + i - 1, 'external_id', 'crm-' || lpad(i::text, 8, '0'), now()
                 FROM generate_series(1, %(leads)s) AS i WHERE i %% 20 IN (3, 11, 17)
               UNION ALL
               SELECT %(unit)s::varchar, %(first)s + i - 1, 'email', 'work' || i || '@corp.example', now() + interval '1 s'
                 FROM generate_series(1, %(leads)s) AS i WHERE i %% 50 = 1""",
            unit,
        )
        log(f"{events:,} events over {days} days")
        # The lead of event i: k = floor(active * u^2) for a uniform u, so lead k's share falls as 1/sqrt(k) (the
        # first ~11,000 events, then 4,600, 3,500, ... down to ~6 at the tail); k is spread over the lead pks by a
        # multiplication modulo the lead count (7919 is prime, so each k has its own lead); 20% of the leads never
        # come up. DECAY events carry the decrease the pass writes.
        conn.execute("SELECT setseed(0.42)")
        conn.execute(
            f"""INSERT INTO events (org_id, unit_id, lead_pk, event_type, occurred_at, received_at, metadata, status,
                                    scored_at, quiet)
               SELECT %(org)s::varchar, %(unit)s::varchar, %(first)s + (floor(%(leads)s * 0.8 * random() ^ 2)::bigint * 7919) %% %(leads)s,
                      t.type, t.at, t.at,
                      CASE WHEN t.type = 'DECAY' THEN '{{"decrease": 5}}'::jsonb
                           ELSE jsonb_build_object('url', '/pricing?p=' || i %% 97) END,
                      1, t.at, false
                 FROM generate_series(1, %(events)s) AS i,
                      LATERAL (SELECT ({sql_array(TYPES)})[1 + i %% {len(TYPES)}] AS type,
                                      now() - make_interval(days => %(days)s) * (1 - i::float8 / %(events)s) AS at) AS t""",
            unit,
        )
        log("score deltas")
        conn.execute(
            """INSERT INTO score_deltas (event_id, ruleset_id, lead_pk, rule_id, delta, score_after)
               SELECT e.id, %(ruleset)s::varchar, e.lead_pk, r.id, coalesce(r.weight, -5), 0
                 FROM events e LEFT JOIN rules r ON r.ruleset_id = %(ruleset)s::varchar AND r.event_type = e.event_type
                WHERE e.unit_id = %(unit)s::varchar""",
            unit,
        )
        log("the leads' last activity")
        conn.execute(
            """UPDATE leads l SET last_event_at = m.at, scored_through_at = m.at, scored_through_id = m.id,
                                  last_event_type = 'page_view'
                 FROM (SELECT lead_pk, max(occurred_at) AS at, max(id) AS id FROM events
                        WHERE unit_id = %(unit)s::varchar GROUP BY lead_pk) m
                WHERE l.pk = m.lead_pk""",
            unit,
        )
        log("VACUUM ANALYZE")
        conn.execute("VACUUM ANALYZE")


def loaded(db: str, leads: int, events: int) -> str | None:
    """The OU's id when the database holds the data set asked for (reused as it is), else None."""
    import psycopg

    try:
        with psycopg.connect(common.libpq_dsn(db)) as conn:
            row = conn.execute("SELECT id FROM org_units WHERE name = 'Main'").fetchone()
            if row is None:
                return None
            n_leads = conn.execute("SELECT count(*) FROM leads WHERE unit_id = %s", row).fetchone()[0]
            n_events = conn.execute("SELECT count(*) FROM events WHERE unit_id = %s", row).fetchone()[0]
    except psycopg.OperationalError:
        return None
    return row[0] if (n_leads, n_events) == (leads, events) else None


def build(args, env) -> str:
    common.recreate_database(args.db)
    common.flush_redis(REDIS_DB)
    cred = common.migrate_and_bootstrap(env, member=MEMBER)
    common.configure_scoring(env, cred, TIERS, RULES)
    common.api(env, cred)("POST", "/decays", {"inactive_for": 30, "unit": "days", "decrease": 5})
    load(args.db, cred["unit_id"], args.leads, args.events, args.days)
    return cred["unit_id"]


def probes(db: str, unit_id: str, leads: int) -> dict:
    """What the pages are asked for: a deep cursor, search prefixes, a typical and the most active lead."""
    import psycopg

    from models import keyset, lead_ops

    with psycopg.connect(common.libpq_dsn(db)) as conn:
        deep = conn.execute(
            """SELECT score, lead_id FROM leads WHERE unit_id = %s AND merged_into IS NULL
                ORDER BY score DESC, lead_id DESC OFFSET %s LIMIT 1""",
            (unit_id, leads * 7 // 10),
        ).fetchone()
        busiest = conn.execute(
            """SELECT l.lead_id, count(*) FROM events e JOIN leads l ON l.pk = e.lead_pk WHERE e.unit_id = %s
                GROUP BY l.lead_id ORDER BY count(*) DESC LIMIT 1""",
            (unit_id,),
        ).fetchone()
        # Typical: of 400 leads with activity, the 20 whose event counts are nearest their median.
        sample = conn.execute(
            """SELECT l.lead_id, count(*) FROM leads l JOIN events e ON e.lead_pk = l.pk
                WHERE l.pk IN (SELECT pk FROM leads WHERE unit_id = %s AND last_event_at IS NOT NULL
                                ORDER BY pk OFFSET %s LIMIT 400)
                GROUP BY l.lead_id""",
            (unit_id, leads // 2),
        ).fetchall()
        middle = statistics.median(n for _, n in sample)
        typical = sorted(sample, key=lambda r: (abs(r[1] - middle), r[0]))[:20]
        email, crm = (
            conn.execute(
                "SELECT value FROM lead_aliases WHERE unit_id = %s AND kind = %s ORDER BY id OFFSET %s LIMIT 1",
                (unit_id, kind, leads // 10),
            ).fetchone()[0]
            for kind in ("email", "external_id")
        )
    row = type("Row", (), {"score": deep[0], "lead_id": deep[1]})
    return {
        "deep": keyset.cursor_of(lead_ops.KEYSET_SORTS["-score"], row),
        "busiest": busiest,
        "typical": [r[0] for r in typical],
        "typical_events": statistics.median(r[1] for r in typical),
        "email_prefix": email[: email.index("@") - 2],  # a person typed most of an address
        "crm_prefix": crm[:-2],
    }


def console_client(env: dict, unit_id: str):
    """A test client of the real app, signed in through the console's own sign-in form with the OU picked."""
    from config import Settings
    from tests.console_helpers import sign_in
    from webapp import create_app

    client = create_app(Settings.from_env(env)).test_client()
    sign_in(client, *MEMBER, unit_id)
    return client


def pages(p: dict) -> list[tuple[str, list[str], dict, str | None]]:
    """(name, the URLs it rotates through, headers, text every answer must hold)."""
    rows = [
        ("Leads, default sort (score)", ["/app/leads"], {}, None),
        ("Leads, by last activity", ["/app/leads?sort=-last_event_at"], {}, None),
        ("Leads, least recently active", ["/app/leads?sort=last_event_at"], {}, None),
    ]
    rows += [(f"Leads, level {name}", [f"/app/leads?level={quote(name)}"], {}, None) for name, _, _ in TIERS]
    rows += [
        ("Leads, score 40..60", ["/app/leads?min_score=40&max_score=60"], {}, None),
        ("Leads, active in 7 days", ["/app/leads?last_active=7d"], {}, None),
        ("Leads, deep keyset page (at 70%)", [f"/app/leads?after={p['deep']}"], {}, None),
        ("Leads, q: a lead id (hit)", ["/app/leads?q=lead-4242", "/app/leads?q=lead-77"], {}, "/app/leads/lead-"),
        ("Leads, q: an email prefix (hit)", [f"/app/leads?q={p['email_prefix']}", "/app/leads?q=anna."], {}, "@"),
        ("Leads, q: a CRM id (hit)", [f"/app/leads?q={p['crm_prefix']}"], {}, "/app/leads/lead-"),
        ("Leads, q: nothing matches (miss)", ["/app/leads?q=zz-nobody", "/app/leads?q=lead-x"], {}, None),
        ("Leads, live refresh (htmx)", ["/app/leads"], {"HX-Request": "true", "HX-Target": "live"}, None),
        (f"A lead, typical (~{p['typical_events']:.0f} events)", [f"/app/leads/{i}" for i in p["typical"]], {}, None),
        (f"A lead, the most active ({p['busiest'][1]:,} events)", [f"/app/leads/{p['busiest'][0]}"], {}, None),
    ]
    return rows


def measure(client, urls: list[str], headers: dict, must: str | None, n: int) -> list[float]:
    times = []
    for k in range(n + 2):
        url = urls[k % len(urls)]
        t0 = time.perf_counter()
        r = client.get(url, headers=headers)
        elapsed = time.perf_counter() - t0
        body = r.get_data(as_text=True)
        if r.status_code != 200 or (must and must not in body.split('id="live"', 1)[-1]):
            raise SystemExit(f"GET {url} -> {r.status_code}: {body[:2000]}")
        if k >= 2:
            times.append(elapsed)
    return times


def main(argv=None) -> int:
    args = parse_args(argv)
    env = common.app_env(args.db, REDIS_DB, QUEUE)
    unit_id = loaded(args.db, args.leads, args.events) if args.reuse else None
    if unit_id is None:
        unit_id = build(args, env)
    else:
        log(f"reusing {args.db}: migrating it")
        common.migrate(env)
        common.analyze_like_autovacuum(args.db)
    p = probes(args.db, unit_id, args.leads)
    client = console_client(env, unit_id)
    rows, missed = [], False
    for name, urls, headers, must in pages(p):
        ms = [t * 1000 for t in measure(client, urls, headers, must, args.requests)]
        p95 = statistics.quantiles(ms, n=20, method="inclusive")[18]
        ok = p95 < args.target_ms
        missed |= not ok
        row = [name, len(ms), f"{statistics.median(ms):.1f}", f"{p95:.1f}", f"{max(ms):.1f}", f"{args.target_ms:g}"]
        rows.append(row + ["PASS" if ok else "FAIL"])
        log(" | ".join(str(c) for c in rows[-1]))
    load_avg = os.getloadavg()
    print(
        f"bench/console.py: {args.leads:,} leads, {args.events:,} events in one OU; {common.git_head()}; "
        f"load average {load_avg[0]:.2f} {load_avg[1]:.2f} {load_avg[2]:.2f}"
    )
    print(common.machine_facts())
    print(common.table(["page", "requests", "p50 ms", "p95 ms", "max ms", "target ms", ""], rows))
    if args.json:
        import json

        Path(args.json).write_text(json.dumps({"rows": rows, "probes": p}, default=str, indent=1))
    if not (args.keep_db or args.reuse):
        common.drop_database(args.db)
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
