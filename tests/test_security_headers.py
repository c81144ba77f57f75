"""Every answer carries the security headers (a page a strict CSP), framework errors are JSON, cookies are locked down;
HSTS and the Secure flag only outside development (docs/http_server.md)."""

import dataclasses
import socket
import threading
import time

import pytest

from config import Settings
from tests.auth_helpers import member_client
from webapp import create_app
from worker.http_policy import API_CSP, HSTS, PAGE_CSP
from worker.web_server import ClientSocket, Limits, WaitingReads

BASE = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


def assert_secured(response, csp=API_CSP, hsts=True):
    for name, value in BASE.items():
        assert response.headers.get(name) == value, (name, response.headers)
    assert response.headers["Content-Security-Policy"] == csp
    assert response.headers.get("Strict-Transport-Security") == (HSTS if hsts else None)


def assert_json_error(response, status, code):
    assert response.status_code == status and response.mimetype == "application/json", response.get_data()
    assert response.json["error"]["code"] == code and set(response.json["error"]) == {"code", "message", "details"}
    assert_secured(response)


def test_json_html_and_docs_answers_carry_the_headers(client, clean):
    assert_secured(client.get("/"))
    page = client.get("/", headers={"Accept": "text/html"})
    assert page.mimetype == "text/html"
    assert_secured(page, csp=PAGE_CSP)
    assert "script-src 'self';" in PAGE_CSP and "unsafe-inline" not in PAGE_CSP and "frame-ancestors 'none'" in PAGE_CSP
    assert_secured(client.get("/docs"), csp=PAGE_CSP)
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "leadpulse-start.js"):
        assert_secured(client.get(f"/docs/assets/{asset}"))
    assert_secured(client.get("/openapi.json"))
    assert_secured(client.get("/metrics"))


def test_the_frameworks_own_errors_are_json_with_the_headers(client, tenant):
    assert_json_error(client.get("/no/such/path"), 404, "not_found")
    wrong_method = client.delete("/")
    assert_json_error(wrong_method, 405, "method_not_allowed")
    assert set(wrong_method.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    too_large = client.post(
        "/auth/login", data=b"x" * (2 * 1024 * 1024 + 1), headers={"Content-Type": "application/json"}
    )
    assert_json_error(too_large, 413, "payload_too_large")
    assert_json_error(
        client.post("/auth/login", data=b"{", headers={"Content-Type": "application/json"}), 400, "malformed_json"
    )
    assert_json_error(client.get("/leads"), 401, "unauthorized")


def test_the_ingest_lane_answers_with_the_headers(app, client, tenant):
    for served in (0, 1):  # the first caches the credential (Flask answers), the second is the lane's
        r = client.post("/ingest", json={"lead_id": "ada", "event_type": "page_view"}, headers=tenant.auth)
        assert r.status_code == 202 and app.wsgi_app.served == served
        assert_secured(r)


def test_cookies_are_httponly_lax_and_secure(client, tenant):
    member = member_client(client, tenant)  # its POST /org-units/active sets activeOu
    set_cookie = client.post("/org-units/active", json={"ouId": tenant.unit_id}, headers=member).headers["Set-Cookie"]
    assert set_cookie.startswith(f"activeOu={tenant.unit_id};")
    assert {"HttpOnly", "Secure", "SameSite=Lax"} <= {part.strip() for part in set_cookie.split(";")}
    cleared = client.post("/auth/cleanup").headers["Set-Cookie"]
    assert cleared.startswith("activeOu=;") and {"HttpOnly", "Secure", "SameSite=Lax"} <= {
        part.strip() for part in cleared.split(";")
    }


def test_development_drops_hsts_and_the_secure_flag_only(settings, tenant):
    app = create_app(dataclasses.replace(settings, environment="development"))
    client = app.test_client()
    assert_secured(client.get("/"), hsts=False)
    assert_secured(client.get("/", headers={"Accept": "text/html"}), csp=PAGE_CSP, hsts=False)
    for served in (0, 1):
        r = client.post("/ingest", json={"lead_id": "ada", "event_type": "page_view"}, headers=tenant.auth)
        assert r.status_code == 202 and app.wsgi_app.served == served
        assert_secured(r, hsts=False)
    member = member_client(client, tenant)
    set_cookie = client.post("/org-units/active", json={"ouId": tenant.unit_id}, headers=member).headers["Set-Cookie"]
    parts = {part.strip() for part in set_cookie.split(";")}
    assert {"HttpOnly", "SameSite=Lax"} <= parts and "Secure" not in parts


def test_settings_refuse_unknown_environments_and_unbounded_reads():
    assert Settings.from_env({}).development is False
    assert Settings.from_env({"LEADPULSE_ENV": "development"}).development is True
    with pytest.raises(SystemExit, match="LEADPULSE_ENV"):
        Settings.from_env({"LEADPULSE_ENV": "dev"})
    with pytest.raises(SystemExit, match="WEB_BODY_TIMEOUT"):
        Settings.from_env({"WEB_BODY_TIMEOUT": "0"})
    with pytest.raises(SystemExit, match="WEB_SLOW_CLIENTS"):
        Settings.from_env({"WEB_SLOW_CLIENTS": "-1"})
    assert Settings.from_env({"WEB_HEADER_TIMEOUT": "0.5"}).web_header_timeout == 0.5


@pytest.fixture
def pair():
    server, client = socket.socketpair()
    yield server, client
    server.close()
    client.close()


def test_a_write_the_client_does_not_take_ends_like_a_broken_pipe(pair):
    """A client that stops reading cannot hold a large answer's write (and its connection) forever."""
    server, client = pair
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn = ClientSocket(server, WaitingReads(4), Limits(head=1, body=0.5, keepalive=1))
    started = time.monotonic()
    with pytest.raises(BrokenPipeError):
        conn.sendall(b"x" * 64 * 1024)  # 0.5 s, plus a second for 64 KB at the minimum rate
    assert 1.2 < time.monotonic() - started < 10
    assert server.gettimeout() is None  # the socket's own mode is left as it was


def test_reads_end_at_the_deadline_and_a_crowd_cuts_its_longest_waiter():
    """Three connections wait on their clients where two may: the one waiting longest is cut at once, the others
    wait out their deadline; bytes that have arrived are read without waiting at all."""
    waiting = WaitingReads(2)
    pairs = [socket.socketpair() for _ in range(3)]
    conns = [ClientSocket(server, waiting, Limits(head=1.5, body=5, keepalive=1)) for server, _ in pairs]
    outcomes = {}

    def read(i):
        started = time.monotonic()
        try:
            conns[i].recv(100)
        except Exception as exc:
            outcomes[i] = (exc, time.monotonic() - started)

    threads = []
    for i in range(3):
        threads.append(threading.Thread(target=read, args=(i,)))
        threads[-1].start()
        while conns[i] not in waiting.waiting:
            time.sleep(0.001)  # the next one starts waiting after this one: a strict order of age
    for t in threads:
        t.join(10)
    cut, cut_after = outcomes[0]
    assert "waited longest" in str(cut) and cut_after < 1.0
    for i in (1, 2):
        late, after = outcomes[i]
        assert "head did not arrive within 1.5 s" in str(late) and after > 1.0
    with pytest.raises(TimeoutError):  # once cut, the connection reads nothing more
        conns[0].recv(100)
    fresh = ClientSocket(pairs[1][0], waiting, Limits(head=1.5, body=5, keepalive=1))
    pairs[1][1].sendall(b"GET")
    assert fresh.recv(100) == b"GET" and waiting.waiting == {}
    for server, client in pairs:
        server.close()
        client.close()
