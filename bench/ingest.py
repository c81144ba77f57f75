"""Single-event POST /ingest throughput under gunicorn, beside a bare Flask endpoint measured in the same run.

    python bench/ingest.py [--workers 2] [--duration 10] [--warmup 3] [--connections 32] [--loadgen auto|wrk|python]

Both targets run under the same gunicorn command line (`python -m gunicorn APP --bind 127.0.0.1:PORT --workers N
--worker-class worker.web_server.GeventWorker --worker-connections 1000`, as `leadpulse web` runs) on a fresh PostgreSQL database migrated and bootstrapped with the real `leadpulse` CLI.
The load generator is wrk (one thread, N keep-alive-capable connections, a Lua script that posts distinct event
ids over many lead ids) when installed, else a Python generator (processes x threads, http.client).
Target: ingest >= 0.5 x the bare endpoint's rate.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import log

DEFAULT_DB = "leadpulse_bench"
REDIS_DB = 14
QUEUE = "leadpulse-bench"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers for both targets (default 2)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per target (default 10)")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds per target first (default 3)")
    p.add_argument(
        "--worker-class",
        default="worker.web_server.GeventWorker",
        help="gunicorn worker class for both targets (default `leadpulse web`'s: gevent with bounded reads; "
        "`gevent` for gunicorn's own)",
    )
    p.add_argument("--threads", type=int, default=8, help="threads per worker with --worker-class gthread (default 8)")
    p.add_argument("--connections", type=int, default=32, help="concurrent client connections (default 32)")
    p.add_argument("--leads", type=int, default=10_000, help="distinct lead ids the events spread over")
    p.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--py-procs", type=int, default=2, help="python load generator: processes (default 2)")
    p.add_argument("--target-ratio", type=float, default=0.5)
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--keep-db", action="store_true", help="leave the benchmark database for inspection")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when the target is missed (default: only on errors)")
    p.add_argument(
        "--batch",
        type=int,
        default=0,
        metavar="N",
        help="batch mode: POST /ingest/batch with N events per request (e.g. 500) while 2 workers score; "
        "target 20,000 events/s, queue depth reported",
    )
    p.add_argument("--batch-target", type=float, default=20_000.0)
    p.add_argument(
        "--scoring-workers", type=int, default=2, help="batch mode: `leadpulse worker` processes (default 2)"
    )
    return p.parse_args(argv)


def worker_model(args) -> list[str]:
    """gunicorn's worker options: `leadpulse web`'s gevent by default; gthread to compare with the earlier runtime."""
    if args.worker_class == "gthread":
        return ["--worker-class", "gthread", "--threads", str(args.threads)]
    return ["--worker-class", args.worker_class, "--worker-connections", "1000"]


# --- load generators -----------------------------------------------------------------------------


def run_wrk(port: int, path: str, auth: str, leads: int, seconds: float, connections: int) -> dict:
    nonce = uuid.uuid4().hex[:10]
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(common.BENCH / "ingest.lua"),
        f"http://127.0.0.1:{port}{path}",
        "--",
        nonce,
        str(leads),
        auth,
        path,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next((row for row in out.splitlines() if row.startswith("WRKJSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no result:\n{out}")
    r = json.loads(line[len("WRKJSON ") :])
    socket_errors = r["connect"] + r["read"] + r["write"] + r["timeout"]
    return {
        "requests": r["requests"],
        "seconds": r["duration_us"] / 1e6,
        "errors": r["status_errors"] + socket_errors,
        "ok": r["requests"] - r["status_errors"],
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
    }


def _py_worker(args):
    """One load process: `threads` threads, each with its own http.client connection (reopened if the server closes it)."""
    port, path, auth, leads, seconds, threads, seed = args
    headers = {"Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = "Basic " + auth
    deadline = time.monotonic() + seconds
    results = []

    def loop(tid):
        rng = random.Random(seed * 1000 + tid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        lat, ok, err, n = [], 0, 0, 0
        while time.monotonic() < deadline:
            n += 1
            body = json.dumps(
                {
                    "lead_id": f"lead-{rng.randrange(leads)}",
                    "event_type": "page_view",
                    "event_id": f"py{seed}-{tid}-{n}",
                    "metadata": {"url": "/pricing"},
                }
            )
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body, headers)
                resp = conn.getresponse()
                resp.read()
                if resp.will_close:
                    conn.close()
                lat.append(time.perf_counter() - t0)
                if resp.status < 400:
                    ok += 1
                else:
                    err += 1
            except (OSError, http.client.HTTPException):
                err += 1
                conn.close()
        results.append((lat, ok, err))

    ts = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    lat = [x for r in results for x in r[0]]
    return lat, sum(r[1] for r in results), sum(r[2] for r in results)


def run_python(port: int, path: str, auth: str, leads: int, seconds: float, connections: int, procs: int) -> dict:
    procs = max(1, min(procs, connections))
    per = [connections // procs + (1 if i < connections % procs else 0) for i in range(procs)]
    seed0 = random.randrange(1 << 30)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(procs) as ex:
        parts = list(ex.map(_py_worker, [(port, path, auth, leads, seconds, per[i], seed0 + i) for i in range(procs)]))
    elapsed = time.perf_counter() - t0
    lat = sorted(x for p in parts for x in p[0])
    ok, err = sum(p[1] for p in parts), sum(p[2] for p in parts)
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
    return {
        "requests": len(lat),
        "seconds": min(elapsed, seconds) if lat else elapsed,
        "errors": err,
        "ok": ok,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
    }


# --- the run -------------------------------------------------------------------------------------


def measure(name, port, path, auth, args, loadgen, server_pid):
    def go(seconds):
        if loadgen == "wrk":
            return run_wrk(port, path, auth, args.leads, seconds, args.connections)
        return run_python(port, path, auth, args.leads, seconds, args.connections, args.py_procs)

    log(f"{name}: warm-up {args.warmup:.0f}s")
    warm = go(args.warmup) if args.warmup > 0 else {"ok": 0, "requests": 0, "errors": 0}
    if common.analyze_like_autovacuum(args.db):
        log("autovacuum is off on this server: ANALYZE after the warm-up, as autovacuum would")
    log(f"{name}: measuring {args.duration:.0f}s")
    busy0, total0 = common.machine_busy()
    srv0 = common.tree_cpu_seconds(server_pid)
    services = common.ServiceCpu(args.db)
    gen0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    spread = common.spread_later(port, args.duration / 2)
    r = go(args.duration)
    r["connection_spread"] = spread["spread"]
    gen1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    services.sample()
    svc1, svc0 = services.totals(), {"postgres": 0.0, "redis-server": 0.0}
    srv1 = common.tree_cpu_seconds(server_pid)
    busy1, total1 = common.machine_busy()
    r["rate"] = r["requests"] / r["seconds"] if r["seconds"] else 0.0
    r["machine_busy_pct"] = 100.0 * (busy1 - busy0) / max(1, total1 - total0)
    r["server_cpu_ms_per_req"] = 1000 * (srv1 - srv0) / max(1, r["requests"])
    r["postgres_cpu_ms_per_req"] = 1000 * (svc1["postgres"] - svc0["postgres"]) / max(1, r["requests"])
    r["redis_cpu_ms_per_req"] = 1000 * (svc1["redis-server"] - svc0["redis-server"]) / max(1, r["requests"])
    gen_cpu = (gen1.ru_utime + gen1.ru_stime) - (gen0.ru_utime + gen0.ru_stime)
    machine = r["seconds"] * (os.cpu_count() or 1)
    r["loadgen_cpu_pct_of_machine"] = 100.0 * gen_cpu / machine
    ours = (srv1 - srv0) + gen_cpu + sum(svc1.values()) - sum(svc0.values())
    r["background_pct_of_machine"] = max(0.0, r["machine_busy_pct"] - 100.0 * ours / machine)
    r["warmup_ok"] = warm["ok"]
    return r


def main(argv=None) -> int:
    args = parse_args(argv)
    loadgen = args.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if shutil.which("wrk") else "python"
    if loadgen == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install -y wrk), or use --loadgen python")

    log(f"fresh database {args.db}, migrate, bootstrap")
    common.recreate_database(args.db)
    common.flush_redis(REDIS_DB)
    metrics_dir = tempfile.mkdtemp(prefix="leadpulse-bench-metrics-")
    # PROMETHEUS_MULTIPROC_DIR as `leadpulse web` sets it, so the counters cost what they cost in production.
    env = common.app_env(args.db, REDIS_DB, QUEUE, PROMETHEUS_MULTIPROC_DIR=metrics_dir)
    cred = common.migrate_and_bootstrap(env)
    auth = base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}".encode()).decode()

    logdir = Path(tempfile.mkdtemp(prefix="leadpulse-bench-ingest-"))
    if args.batch:
        return run_batch_mode(args, env, auth, logdir, metrics_dir)
    ports = {"bare": common.free_port(), "ingest": common.free_port()}
    # The same worker model `leadpulse web` uses (gevent), for both targets.
    gunicorn = lambda app, port: [
        sys.executable,
        "-m",
        "gunicorn",
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        *worker_model(args),
    ]
    cmds = {
        "bare": gunicorn("bench.bare_app:app", ports["bare"]),
        "ingest": gunicorn("webapp.wsgi:app", ports["ingest"]),
    }
    procs = {}
    results = {}
    try:
        for name in ("bare", "ingest"):
            procs[name] = common.start(cmds[name], env, logdir / f"{name}.log")
        for name in ("bare", "ingest"):
            common.wait_http(f"http://127.0.0.1:{ports[name]}/", procs[name], log_path=logdir / f"{name}.log")
        log(
            f"servers up (bare :{ports['bare']}, ingest :{ports['ingest']}, {args.workers} workers each); "
            f"load generator {loadgen}, {args.connections} connections"
        )
        results["bare"] = measure("bare flask", ports["bare"], "/ingest", "", args, loadgen, procs["bare"].pid)
        results["ingest"] = measure(
            "POST /ingest", ports["ingest"], "/ingest", auth, args, loadgen, procs["ingest"].pid
        )
    finally:
        for p in procs.values():
            common.stop(p)
        log(f"servers stopped (logs in {logdir})")

    # Every accepted request must be a stored event: the check that the fast path is the real one.
    import psycopg

    with psycopg.connect(common.libpq_dsn(args.db)) as conn:
        stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
        leads = conn.execute("SELECT count(*) FROM leads").fetchone()[0]
    accepted = results["ingest"]["ok"] + results["ingest"]["warmup_ok"]
    common.flush_redis(REDIS_DB)
    shutil.rmtree(metrics_dir, ignore_errors=True)
    if not args.keep_db:
        common.drop_database(args.db)

    b, i = results["bare"], results["ingest"]
    ratio = i["rate"] / b["rate"] if b["rate"] else 0.0
    sound = i["errors"] == 0 and b["errors"] == 0 and stored >= accepted
    ok = ratio >= args.target_ratio and sound
    rows = [
        [name, r["requests"], f"{r['rate']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", r["errors"]]
        for name, r in (("bare flask", b), ("POST /ingest", i))
    ]
    print()
    print(
        f"ingest benchmark: gunicorn --workers {args.workers} {' '.join(worker_model(args))}, {loadgen} with {args.connections} connections, "
        f"{args.duration:.0f}s measured after {args.warmup:.0f}s warm-up, events over {args.leads} lead ids"
    )
    print(common.table(["target", "requests", "req/s", "p50 ms", "p99 ms", "errors"], rows))
    print(f"ratio ingest/bare = {ratio:.2f} (target >= {args.target_ratio:.2f}): {'PASS' if ok else 'FAIL'}")
    print(
        f"cpu: machine busy {b['machine_busy_pct']:.0f}% / {i['machine_busy_pct']:.0f}% (bare / ingest); "
        f"CPU ms per request: gunicorn {b['server_cpu_ms_per_req']:.2f} / {i['server_cpu_ms_per_req']:.2f}, "
        f"postgres {b['postgres_cpu_ms_per_req']:.2f} / {i['postgres_cpu_ms_per_req']:.2f}, "
        f"redis {b['redis_cpu_ms_per_req']:.2f} / {i['redis_cpu_ms_per_req']:.2f}; "
        f"load generator {b['loadgen_cpu_pct_of_machine']:.0f}% / {i['loadgen_cpu_pct_of_machine']:.0f}% of the machine; "
        f"other processes (not this benchmark) {b['background_pct_of_machine']:.0f}% / {i['background_pct_of_machine']:.0f}%"
    )
    print(
        f"client connections per gunicorn worker at mid-run: {b['connection_spread']} / {i['connection_spread']} (bare / ingest)"
    )
    print(
        f"check: {accepted} accepted responses, {stored} events stored over {leads} leads "
        f"(stored may exceed accepted by requests in flight when the client stopped)"
    )
    if stored < accepted:
        print("FAIL: fewer events stored than accepted")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "results": results,
                    "ratio": ratio,
                    "pass": ok,
                    "loadgen": loadgen,
                    "workers": args.workers,
                    "connections": args.connections,
                    "stored": stored,
                    "accepted": accepted,
                },
                indent=2,
            )
        )
    # A missed target is a result, not a crash: `make bench` goes on to the next benchmark unless --strict.
    return 0 if sound and (ok or not args.strict) else 1


def run_batch_mode(args, env, auth: str, logdir: Path, metrics_dir: str) -> int:
    """Events/s through POST /ingest/batch (wrk, N events per request) with real workers scoring at the same time."""
    import psycopg

    if not shutil.which("wrk"):
        raise SystemExit("batch mode needs wrk (apt-get install -y wrk)")
    port = common.free_port()
    env = {**env, "PORT": str(port), "WEB_CONCURRENCY": str(args.workers)}
    procs = [common.start([common.LEADPULSE, "web"], env, logdir / "web.log")]
    procs += [
        common.start([common.LEADPULSE, "worker"], env, logdir / f"worker{i}.log") for i in range(args.scoring_workers)
    ]
    depth: list[tuple[float, int]] = []
    stop = threading.Event()

    def sample():  # the scoring backlog (queue_depth), once a second, through the whole run and the drain
        with psycopg.connect(common.libpq_dsn(args.db), autocommit=True) as conn:
            while not stop.wait(1.0):
                depth.append((time.time(), conn.execute("SELECT count(*) FROM events WHERE status = 0").fetchone()[0]))

    try:
        common.wait_http(f"http://127.0.0.1:{port}/", procs[0], log_path=logdir / "web.log")
        log(
            f"web on :{port} ({args.workers} gevent workers), {args.scoring_workers} workers; "
            f"wrk {args.connections} connections x {args.batch} events per request"
        )
        wrk = lambda seconds: (
            subprocess.run(
                [
                    "wrk",
                    "-t1",
                    f"-c{args.connections}",
                    f"-d{max(1, round(seconds))}s",
                    "--timeout",
                    "30s",
                    "-s",
                    str(common.BENCH / "ingest.lua"),
                    f"http://127.0.0.1:{port}/ingest/batch",
                    "--",
                    uuid.uuid4().hex[:10],
                    str(args.leads),
                    auth,
                    "/ingest/batch",
                    str(args.batch),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        if args.warmup > 0:
            log(f"warm-up {args.warmup:.0f}s")
            wrk(args.warmup)
        if common.analyze_like_autovacuum(args.db):
            log("autovacuum is off on this server: ANALYZE after the warm-up, as autovacuum would")
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        log(f"measuring {args.duration:.0f}s")
        busy0, total0 = common.machine_busy()
        web0, services = common.tree_cpu_seconds(procs[0].pid), common.ServiceCpu(args.db)
        t0 = time.time()
        spread = common.spread_later(port, args.duration / 2)
        out = wrk(args.duration)
        t_end = time.time()
        services.sample()
        web_cpu, pg_cpu = common.tree_cpu_seconds(procs[0].pid) - web0, services.totals()["postgres"]
        busy1, total1 = common.machine_busy()
        line = next((x for x in out.splitlines() if x.startswith("WRKJSON ")), None)
        if line is None:
            raise SystemExit(f"wrk printed no result:\n{out}")
        r = json.loads(line[len("WRKJSON ") :])
        deadline = time.time() + (300 if args.scoring_workers else 0)  # nothing drains the backlog without workers
        while time.time() < deadline and (not depth or depth[-1][1] > 0):
            time.sleep(0.5)
        drained = time.time()
        stop.set()
        sampler.join()
        with psycopg.connect(common.libpq_dsn(args.db)) as conn:
            stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
            pending = conn.execute("SELECT count(*) FROM events WHERE status = 0").fetchone()[0]
    finally:
        for p in procs:
            common.stop(p)
        log(f"web and workers stopped (logs in {logdir})")
    common.flush_redis(REDIS_DB)
    shutil.rmtree(metrics_dir, ignore_errors=True)
    if not args.keep_db:
        common.drop_database(args.db)
    errors = r["status_errors"] + r["connect"] + r["read"] + r["write"] + r["timeout"]
    events = (r["requests"] - r["status_errors"]) * args.batch
    rate = events / (r["duration_us"] / 1e6)
    during = [d for t, d in depth if t <= t_end]
    ok = rate >= args.batch_target and errors == 0
    print()
    print(
        f"batch ingest benchmark: POST /ingest/batch x {args.batch} events, `leadpulse web` ({args.workers} gevent workers), "
        f"wrk {args.connections} connections, {args.scoring_workers} scoring workers, {args.duration:.0f}s measured"
    )
    print(
        common.table(
            ["requests", "events", "events/s", "p50 ms", "p99 ms", "errors"],
            [[r["requests"], events, f"{rate:.0f}", f"{r['p50_us'] / 1000:.1f}", f"{r['p99_us'] / 1000:.1f}", errors]],
        )
    )
    print(
        f"events/s {rate:.0f} (target >= {args.batch_target:.0f}): {'PASS' if ok else 'FAIL'}; machine busy "
        f"{100 * (busy1 - busy0) / max(1, total1 - total0):.0f}%"
    )
    print(f"client connections per gunicorn worker at mid-run: {spread['spread']}")
    # CPU per event compares runs whatever the spread (which decides how much of the machine one worker can use).
    print(
        f"CPU us per event: web {1e6 * web_cpu / max(1, events):.0f}, postgres {1e6 * pg_cpu / max(1, events):.0f}"
        + (" (postgres includes the scoring workers' queries)" if args.scoring_workers else "")
    )
    print(f"queue depth (pending events) during the load, every 1 s: {[d for d in during]}")
    drain = (
        f"scored everything {drained - t_end:.1f}s after the load stopped ({pending} still pending)"
        if args.scoring_workers
        else f"no scoring workers (ingest alone): {pending} pending"
    )
    print(f"max {max(during, default=0)}, at the end {during[-1] if during else 0}; {drain}; stored {stored} events")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "mode": "batch",
                    "wrk": r,
                    "events": events,
                    "rate": rate,
                    "pass": ok,
                    "depth": depth,
                    "drain_seconds": drained - t_end,
                    "t0": t0,
                    "connection_spread": spread["spread"],
                    "web_cpu_us_per_event": 1e6 * web_cpu / max(1, events),
                    "postgres_cpu_us_per_event": 1e6 * pg_cpu / max(1, events),
                },
                indent=2,
            )
        )
    return 0 if errors == 0 and (ok or not args.strict) else 1


if __name__ == "__main__":
    sys.exit(main())
