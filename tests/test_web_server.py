"""`leadpulse web` as deployed (gunicorn, gevent workers): concurrent ingests share commits, open streams block nothing."""

import http.client
import json
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from models.db import session_factory
from models.events import Event
from tests.conftest import wait_until
from tests.helpers import free_port


@pytest.fixture
def web(tmp_path, clean):
    """A real `leadpulse web` with one worker process on a free port; its log is in tmp_path on failure."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "WEB_CONCURRENCY": "1", "WEB_CONNECTIONS": "200"}
    log = open(tmp_path / "web.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "web"], env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()

    def up():
        assert proc.poll() is None, (tmp_path / "web.log").read_text()
        try:
            return request(port, "GET", "/")[0] == 200
        except OSError:
            return False

    wait_until(up, timeout=30, message="leadpulse web answering")
    yield port
    proc.send_signal(signal.SIGQUIT)  # quick shutdown: a graceful one waits for the streams' next keepalive
    proc.wait(timeout=20)


def request(port, method, path, body=None, headers=None, timeout=30):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            method,
            path,
            body=json.dumps(body) if body is not None else None,
            headers={"Content-Type": "application/json", **(headers or {})},
        )
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_concurrent_single_event_ingests_are_all_committed_once(web, tenant, settings):
    def send(n):
        return request(
            web,
            "POST",
            "/ingest",
            {"lead_id": f"lead-{n % 7}", "event_type": "page_view", "event_id": f"e-{n}"},
            tenant.auth,
        )

    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(send, range(200)))
    assert {status for status, _ in answers} == {202}
    bodies = [json.loads(body) for _, body in answers]
    assert not any(b["duplicate"] for b in bodies) and len({b["id"] for b in bodies}) == 200
    status, body = send(3)  # a repeat after the fact: the stored event, not a second one
    assert status == 202 and json.loads(body)["duplicate"] is True
    with session_factory(settings.database_url)() as s:
        assert s.execute(select(func.count()).select_from(Event)).scalar() == 200


def test_open_streams_do_not_hold_up_ingest(web, tenant):
    """More idle SSE clients than a thread-per-request server has threads: ingest still answers, and each hears it."""
    streams = []
    for _ in range(20):
        conn = http.client.HTTPConnection("127.0.0.1", web, timeout=30)
        conn.request("GET", "/stream", headers=tenant.auth)
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.readline().startswith(b"event: ready")
        streams.append((conn, resp))
    try:
        status, body = request(
            web, "POST", "/ingest", {"lead_id": "ada", "event_type": "demo_request"}, tenant.auth, timeout=10
        )
        assert status == 202
        row_id = json.loads(body)["id"]
        for _, resp in streams:
            while not (line := resp.readline()).startswith(b"event: new_event"):
                assert line, "stream closed before the new event"
            assert json.loads(resp.readline().split(b": ", 1)[1])["id"] == row_id
    finally:
        for conn, _ in streams:
            conn.close()


def test_a_password_check_does_not_hold_up_the_gevent_worker(tmp_path):
    """While argon2 checks a password (in C, ~0.1 s), other greenlets of the worker run."""
    script = tmp_path / "offload.py"
    script.write_text(
        "from gevent import monkey; monkey.patch_all()\n"
        "import gevent\n"
        "from models.accounts import hash_password, password_matches\n"
        "from webapp.offload import off_loop\n"
        "stored, order = hash_password('pw'), []\n"
        "def login(): order.append(('login', off_loop(password_matches, 'pw', stored)))\n"
        "def other(): order.append(('other', None))\n"
        "a = gevent.spawn(login); gevent.sleep(0); b = gevent.spawn(other); gevent.joinall([a, b])\n"
        "print(order)\n"
    )
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
        env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(os.path.abspath(__file__)))},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[('other', None), ('login', True)]"
