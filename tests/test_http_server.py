"""The HTTP server layer as deployed (`leadpulse web`, both worker models): slow clients cost a timeout, not the
service, and gunicorn's own refusals answer in LeadPulse's JSON envelope (docs/http_server.md)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import wait_until
from tests.helpers import free_port

HEAD_TIMEOUT, BODY_TIMEOUT, SLOW_CLIENTS = 1.0, 3.0, 20
STALLED_LOGIN = b"POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"


@pytest.fixture(scope="module", params=["gevent", "threads"])
def server(request, settings, tmp_path_factory):
    """`leadpulse web`, one process: gevent workers on PostgreSQL, threads on SQLite (its embedded default)."""
    tmp = tmp_path_factory.mktemp(request.param)
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "WEB_CONNECTIONS": "60",
        "WEB_HEADER_TIMEOUT": str(HEAD_TIMEOUT),
        "WEB_BODY_TIMEOUT": str(BODY_TIMEOUT),
    }
    if request.param == "gevent":
        env["WEB_SLOW_CLIENTS"] = str(SLOW_CLIENTS)
    else:  # 8 threads, of which half may wait on clients (the default)
        env["DATABASE_URL"] = f"sqlite:///{tmp / 'leadpulse.db'}"
    log = open(tmp / "web.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "web"], env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()

    def up():
        assert proc.poll() is None, (tmp / "web.log").read_text()
        try:
            return status_of(exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")) == 200
        except OSError:
            return False

    wait_until(up, timeout=30, message="leadpulse web answering")
    yield request.param, port
    proc.send_signal(signal.SIGQUIT)
    proc.wait(timeout=20)


def connect(port: int, data: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if data:
        sock.sendall(data)
    return sock


def read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection (a test failure if it does not within timeout)."""
    sock.settimeout(timeout)
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    sock.close()
    return out


def exchange(port: int, request: bytes, timeout: float = 10) -> bytes:
    return read_all(
        connect(port, request[:-2] + b"Connection: close\r\n\r\n" if request.endswith(b"\r\n\r\n") else request),
        timeout,
    )


def status_of(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def headers_of(answer: bytes) -> dict:
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {name.lower(): value for name, value in (line.split(": ", 1) for line in head)}


def error_of(answer: bytes) -> dict:
    """The JSON error envelope of an answer, checked whole."""
    headers = headers_of(answer)
    assert headers["content-type"] == "application/json", answer
    assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY", answer
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


def test_clients_stalling_on_their_bodies_cost_a_timeout_not_the_service(server):
    """More stalled clients than the process has connections: a plain request is still answered at once (long before
    the body timeout frees anything), and every stalled client gets a 408 and a closed connection."""
    kind, port = server
    stalled = [connect(port, STALLED_LOGIN) for _ in range(150 if kind == "gevent" else 40)]
    started = time.monotonic()
    answer = exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", timeout=BODY_TIMEOUT / 2)
    assert status_of(answer) == 200 and time.monotonic() - started < BODY_TIMEOUT / 2
    for sock in stalled:
        answer = read_all(sock, timeout=BODY_TIMEOUT + 10)
        assert status_of(answer) == 408 and error_of(answer)["code"] == "request_timeout", answer
    # The last ones waited out the body timeout itself; none was left open past it.
    assert BODY_TIMEOUT * 0.9 < time.monotonic() - started < BODY_TIMEOUT + 10


def test_a_large_body_that_stalls_is_answered_408_by_the_app(server):
    """A body too large to be read before the app runs is read by the app, under the same deadline."""
    _, port = server
    head = b"POST /auth/login HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    sock = connect(port, head + b'{"email": ')
    started = time.monotonic()
    answer = read_all(sock, timeout=BODY_TIMEOUT + 10)
    assert time.monotonic() - started > BODY_TIMEOUT * 0.9
    assert status_of(answer) == 408, answer
    error = error_of(answer)
    assert error["code"] == "request_timeout" and "body" in error["message"], error


def test_a_request_head_that_never_completes_is_closed_after_the_header_timeout(server):
    _, port = server
    partial = [connect(port, b"GET / HTTP/1.1\r\nHost: t\r\n") for _ in range(5)]
    silent = [connect(port) for _ in range(5)]
    started = time.monotonic()
    for sock in partial + silent:
        assert read_all(sock, timeout=HEAD_TIMEOUT + 10) == b""  # closed without an answer, as an idle connection
    assert time.monotonic() - started < HEAD_TIMEOUT + 10
    assert status_of(exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")) == 200


def test_a_kept_alive_connection_serves_request_after_request(server):
    _, port = server
    sock = connect(port)
    for _ in range(3):
        sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = b""
        while not answer.endswith(b'{"status":"ok"}\n'):
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
        assert status_of(answer) == 200 and headers_of(answer)["connection"] == "keep-alive"
    sock.close()


@pytest.mark.parametrize(
    "request_bytes, status, code",
    [
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-Bad: a\x01b\r\n\r\n", 400, "bad_request"),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n", 414, "uri_too_long"),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"y" * 9000 + b"\r\n\r\n", 431, "header_too_large"),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(150)) + b"\r\n",
            431,
            "header_too_large",
        ),
    ],
    ids=["control-character", "uri-too-long", "field-too-large", "too-many-fields"],
)
def test_the_servers_own_refusals_answer_json(server, request_bytes, status, code):
    _, port = server
    answer = read_all(connect(port, request_bytes))
    assert status_of(answer) == status, answer
    headers = headers_of(answer)
    assert headers["connection"] == "close" and "strict-transport-security" in headers
    assert headers["content-security-policy"].startswith("default-src 'none'")
    error = error_of(answer)
    assert error["code"] == code and error["message"], error


def test_clients_that_never_close_hold_up_no_one(server):
    """Answered with Connection: close, a client that keeps its end open: gunicorn's threaded worker lingered up to
    2 s for each in its one main thread, holding every other connection."""
    _, port = server
    lingering = [connect(port, b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n") for _ in range(5)]
    for sock in lingering:  # each has its answer: the server is now closing its side
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    assert status_of(exchange(port, b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", timeout=5)) == 200
    assert time.monotonic() - started < 1.5
    for sock in lingering:
        sock.close()
