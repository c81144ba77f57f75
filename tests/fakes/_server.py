"""Shared machinery for the fake HTTP services: a threaded local server, a request log and fault injection."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class _QuietHandler(WSGIRequestHandler):
    """Keeps test output clean: the request log lives in the fake, not on stderr."""

    def log(self, type, message, *args):
        pass


@dataclass
class RecordedRequest:
    """One request as the fake saw it, for assertions."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any
    raw_body: bytes
    at: float
    status: int | None = None
    client_port: int | None = None  # the caller's TCP port: which process sent it


@dataclass
class Fault:
    """A planned misbehaviour for the next `remaining` matching requests."""

    kind: str  # "status", "hang" (wait, then serve) or "slow" (serve, then wait before answering)
    remaining: int
    path: str | None = None
    status: int = 500
    seconds: float = 0.0
    options: dict = field(default_factory=dict)

    def matches(self, path: str) -> bool:
        return self.remaining > 0 and (
            self.path is None or path == self.path or path.startswith(self.path.rstrip("/") + "/")
        )


def json_response(body: Any, status: int = 200, headers: dict | None = None) -> Response:
    """JSON the way the real services send it."""
    return Response(
        json.dumps(body), status=status, headers=headers or {}, content_type="application/json; charset=utf-8"
    )


def parse_body(request: Request) -> Any:
    """JSON when sent as JSON, else form fields (single values), else the text."""
    raw = request.get_data(cache=True)
    ctype = request.mimetype or ""
    if ctype == "application/json":
        try:
            return json.loads(raw or b"null")
        except ValueError:
            return raw.decode("utf-8", "replace")
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return {k: v for k, v in request.form.items()}
    return raw.decode("utf-8", "replace") if raw else None


class FakeServer:
    """Real HTTP on 127.0.0.1 in a background thread, so real clients with their own HTTP stacks can be tested."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._stopping = threading.Event()
        self.requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._server = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None

    # lifecycle
    def start(self) -> FakeServer:
        self._stopping.clear()
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases hanging requests
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # fault injection
    def fail_next(self, n: int = 1, status: int = 500, path: str | None = None, **options) -> None:
        """The next n requests (to `path` and below, if given) answer `status` instead of being served."""
        with self.lock:
            self._faults.append(Fault("status", n, path, status=status, options=options))

    def hang_next(self, n: int = 1, seconds: float = 5.0, path: str | None = None) -> None:
        """The next n requests wait `seconds` before being served, to exercise client timeouts."""
        with self.lock:
            self._faults.append(Fault("hang", n, path, seconds=seconds))

    def slow_next(self, n: int = 1, seconds: float = 5.0, path: str | None = None) -> None:
        """The next n requests take effect at once but are answered only after `seconds`: a caller that dies
        meanwhile never learns that its call went through."""
        with self.lock:
            self._faults.append(Fault("slow", n, path, seconds=seconds))

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def _take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.matches(path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # observation
    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        with self.lock:
            return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Blocks until predicate() holds, re-checking after every request, instead of sleeping blindly."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{type(self).__name__}: condition not met within {timeout}s")
                self._changed.wait(min(left, 0.1))

    # dispatch
    def _wsgi(self, environ, start_response):
        request = Request(environ)
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query={k: request.args.getlist(k) for k in request.args.keys()},
            headers=dict(request.headers.items()),
            body=parse_body(request),
            raw_body=request.get_data(cache=True),
            at=time.time(),
            client_port=int(environ["REMOTE_PORT"]) if environ.get("REMOTE_PORT") else None,
        )
        with self.lock:
            self.requests.append(record)
        fault = self._take_fault(request.path)
        if fault is not None and fault.kind == "hang":
            self._stopping.wait(fault.seconds)
            fault = None
        slow = fault if fault is not None and fault.kind == "slow" else None
        fault = None if slow is not None else fault
        try:
            if fault is not None and fault.kind == "status":
                response = self.fault_response(fault, request)
            else:
                response = self.handle(request, record)
        except Exception as exc:  # a bug in the fake must show up as a 500, not a dropped connection
            response = json_response({"error": f"fake server error: {exc!r}"}, 500)
        if slow is not None:  # done, not yet answered: the record's status stays None until the answer goes
            self._stopping.wait(slow.seconds)
        with self._changed:
            record.status = response.status_code
            self._changed.notify_all()
        return response(environ, start_response)

    def handle(self, request: Request, record: RecordedRequest) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError

    def fault_response(self, fault: Fault, request: Request) -> Response:  # pragma: no cover - abstract
        raise NotImplementedError
