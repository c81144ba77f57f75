"""A 50 MB CSV through POST /import under gunicorn: the web process's memory must not grow with the file.

    python bench/import_csv.py [--mb 50] [--keep-db] [--json FILE] [--strict]

Writes a CSV of `--mb` megabytes to a temporary file (event_type, lead_id, timestamp, metadata, event_id over
20,000 leads), starts `leadpulse web` (one gunicorn worker, so one process holds the request) with
LEADPULSE_IMPORT_MAX_MB large enough, and uploads the file with http.client as multipart, streamed from disk.
Every 100 ms it samples the RSS of the web worker; it reports the peak growth over the RSS before the upload beside
the file size. Target: peak growth under 32 MB whatever the file size (the rows are read one by one, 500 per
transaction; werkzeug spools the upload to a temporary file), and every row stored.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common
from common import log

DB = "leadpulse_bench_import"
REDIS_DB = 10
QUEUE = "leadpulse-bench-import"
MAX_GROWTH_MB = 32


def write_csv(path: Path, megabytes: float) -> int:
    """Rows until the file reaches the size; returns the row count."""
    target, rows = int(megabytes * 1024 * 1024), 0
    rng = random.Random(7)
    nonce = uuid.uuid4().hex[:8]
    with path.open("w", newline="") as f:
        f.write("event_type,lead_id,timestamp,metadata,event_id\n")
        while f.tell() < target:
            rows += 1
            f.write(
                f"page_view,lead-{rng.randrange(20000)},2026-11-{1 + rows % 20:02d}T10:00:00Z,"
                f'"{{""url"": ""/pricing"", ""n"": {rows}}}",{nonce}-{rows}\n'
            )
    return rows


def upload(port: int, auth: str, path: Path) -> tuple[int, dict, float]:
    """multipart/form-data streamed from the file in 64 KB pieces."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="events.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = len(head) + path.stat().st_size + len(tail)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
    t0 = time.monotonic()
    conn.putrequest("POST", "/import")
    conn.putheader("Authorization", "Basic " + auth)
    conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    conn.send(head)
    with path.open("rb") as f:
        while chunk := f.read(65536):
            conn.send(chunk)
    conn.send(tail)
    resp = conn.getresponse()
    body = json.loads(resp.read() or b"{}")
    return resp.status, body, time.monotonic() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=50.0)
    p.add_argument("--keep-db", action="store_true")
    p.add_argument("--json", metavar="FILE")
    p.add_argument("--strict", action="store_true")
    args = p.parse_args(argv)

    import base64

    import psycopg

    tmp = Path(tempfile.mkdtemp(prefix="leadpulse-bench-import-"))
    csv_path = tmp / "events.csv"
    rows = write_csv(csv_path, args.mb)
    file_mb = csv_path.stat().st_size / 1024 / 1024
    log(f"wrote {file_mb:.1f} MB, {rows} rows; fresh database {DB}")
    common.recreate_database(DB)
    common.flush_redis(REDIS_DB)
    port = common.free_port()
    env = common.app_env(
        DB, REDIS_DB, QUEUE, PORT=str(port), WEB_CONCURRENCY="1", LEADPULSE_IMPORT_MAX_MB=str(int(args.mb) + 10)
    )
    cred = common.migrate_and_bootstrap(env)
    auth = base64.b64encode(f"{cred['client_id']}:{cred['client_secret']}".encode()).decode()
    web = common.start([common.LEADPULSE, "web"], env, tmp / "web.log")
    peak = {"rss_kb": 0}
    stop = threading.Event()
    try:
        common.wait_http(f"http://127.0.0.1:{port}/", web, log_path=tmp / "web.log")
        workers = common.children_of(web.pid)
        if len(workers) != 1:
            raise SystemExit(f"expected one gunicorn worker, found {workers}")
        worker = workers[0]
        base_kb = common.status_kb(worker, "VmRSS")

        def sample():
            while not stop.wait(0.1):
                peak["rss_kb"] = max(peak["rss_kb"], common.status_kb(worker, "VmRSS"))

        threading.Thread(target=sample, daemon=True).start()
        log(f"uploading to :{port} (web worker {worker}, RSS {base_kb / 1024:.0f} MB before)")
        status, body, seconds = upload(port, auth, csv_path)
        stop.set()
    finally:
        common.stop(web)
    with psycopg.connect(common.libpq_dsn(DB)) as conn:
        stored = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    if not args.keep_db:
        common.drop_database(DB)
    common.flush_redis(REDIS_DB)
    growth_mb = max(0, peak["rss_kb"] - base_kb) / 1024
    ok_memory = growth_mb < MAX_GROWTH_MB
    sound = status == 202 and body.get("accepted") == rows and stored == rows
    print()
    print(f"CSV import benchmark: {file_mb:.1f} MB, {rows} rows, one gunicorn worker")
    print(
        common.table(
            ["status", "accepted", "rejected", "stored", "seconds", "rows/s", "RSS before MB", "peak growth MB"],
            [
                [
                    status,
                    body.get("accepted"),
                    body.get("rejected"),
                    stored,
                    f"{seconds:.1f}",
                    f"{rows / seconds:.0f}",
                    f"{base_kb / 1024:.0f}",
                    f"{growth_mb:.1f}",
                ]
            ],
        )
    )
    print(
        f"peak RSS growth {growth_mb:.1f} MB for a {file_mb:.1f} MB file (target < {MAX_GROWTH_MB} MB): "
        f"{'PASS' if ok_memory else 'FAIL'}; every row stored: {'yes' if sound else 'NO'}"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "rows": rows,
                    "file_mb": file_mb,
                    "status": status,
                    "body": body,
                    "stored": stored,
                    "seconds": seconds,
                    "growth_mb": growth_mb,
                },
                indent=2,
            )
        )
    os.remove(csv_path)
    return 0 if sound and (ok_memory or not args.strict) else 1


if __name__ == "__main__":
    sys.exit(main())
