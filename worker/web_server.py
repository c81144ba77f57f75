"""The gunicorn worker classes `leadpulse web` runs: a slow client costs a timeout, not the service (docs/http_server.md).

Stock gunicorn lets a client hold a connection for as long as it likes: the gevent worker reads a request body with
no timeout at all (and bounds a request head only by --keep-alive, which is also the idle time of a kept-alive
connection), and the threaded worker reads heads and bodies with none once a first byte came. A few thousand
sockets that send a head and then nothing took every connection slot, and `GET /` timed out until they left.

The bound lives here, in the worker, rather than in a WSGI middleware: only the worker sees a request head being
read (the app sees nothing before the head is complete), and one socket wrapper, ClientSocket, bounds every read
gunicorn and the app make, under both worker models, with the socket's own timeouts (no gevent.Timeout, which the
threaded worker could not use). On top of the deadlines, WaitingReads caps how many connections of a process may
wait on their client at once, cutting the one whose request has been arriving longest: a crowd of stalled clients
then churns among itself, while a client that sends its request at once never waits long enough to be the oldest.

The module sits in worker/, not webapp/, because gunicorn imports the worker class in its master process: importing
webapp would load the whole Flask stack there, before the gevent workers patch the standard library.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import socket
import threading
import time
from dataclasses import dataclass

from gunicorn import util
from gunicorn.http.body import Body, LengthReader
from gunicorn.workers import ggevent, gthread

from config import Settings
from worker.http_policy import HTTP_CODES, ClientTimeout, error_payload, security_headers

# Bytes a second a body (or a response the client takes) may always flow at: each byte received or sent extends the
# deadline by 1/MIN_RATE s, so a 10 MB import on a slow link is not cut at WEB_BODY_TIMEOUT while it still moves.
MIN_RATE = 64 * 1024
# A body up to this size is read whole before the app runs (most are: an event, a login), so a client that stalls
# on one costs the worker a parked read, never a request's trip through Flask; larger ones are read by the app.
PREBUFFER = 64 * 1024


@dataclass(frozen=True)
class Limits:
    head: float  # seconds from accepting a connection to having its first request head
    body: float  # seconds from a request's head to having its body (plus MIN_RATE time); also a write's bound
    keepalive: float  # seconds a kept-alive connection may take to send its next request head (gunicorn's --keep-alive)


class WaitingReads:
    """The connections of one worker process now waiting on their client's bytes, at most `cap` of them."""

    def __init__(self, cap: int):
        self.cap = cap
        self.waiting: dict[ClientSocket, None] = {}  # an ordered set with O(1) removal
        self.lock = threading.Lock()  # the threaded worker's threads share it; under gevent it is uncontended

    def enter(self, conn: ClientSocket) -> None:
        """Count conn as waiting; at the cap, the other connection whose request has been arriving longest is cut.

        Never conn itself: its bytes may well be there already (a read only waits if they are not), and a client
        that sends its request at once must get through however many stalled ones crowd the process."""
        with self.lock:
            if len(self.waiting) >= self.cap:
                oldest = min(self.waiting, key=_started)  # O(cap), and only while the process is crowded
                del self.waiting[oldest]
                oldest.evict()
            self.waiting[conn] = None

    def leave(self, conn: ClientSocket) -> None:
        with self.lock:
            self.waiting.pop(conn, None)


def _started(conn: ClientSocket) -> float:
    return conn.started


class ClientSocket:
    """An accepted connection whose reads end at the deadline of what is being read (a head or a body), and whose
    writes end when the client stops taking the answer; every other socket call is the socket's own."""

    def __init__(self, sock, waiting: WaitingReads, limits: Limits):
        self.sock, self.waiting, self.limits = sock, waiting, limits
        self.timed_out = self.evicted = self.sent = self.closing = False
        self.expect(limits.head, body=False)

    def __getattr__(self, name):  # fileno, setblocking, shutdown, close, ...: gunicorn's selectors and closes
        return getattr(self.sock, name)

    def expect(self, seconds: float, body: bool) -> None:
        """Start reading a request head (body=False) or its body, due within `seconds` from now."""
        self.in_body = body
        self.started = time.monotonic()
        self.deadline = self.started + seconds
        if body:
            self.sent = False  # nothing of this request's answer written yet

    def recv(self, size: int, *flags):
        if self.timed_out:  # as a socket whose timeout passed: gunicorn's drains and closes expect exactly that
            raise TimeoutError("timed out")
        if self.evicted:  # cut from another thread just after its last wait
            raise self.cut()
        if not self.closing and time.monotonic() >= self.deadline:
            raise self._late()
        prior = self.sock.gettimeout()
        self.sock.settimeout(0.0)
        try:
            data = self.sock.recv(size, *flags)  # what has arrived: the usual case, no wait and not counted waiting
        except BlockingIOError:
            # Closing, gunicorn's threaded worker drains what the client still sends, for up to 2 s in its one
            # main thread: a client that never closes would stall every other connection. Take what is here only.
            if self.closing or prior == 0.0:
                raise
            data = self._wait_for(size, flags, prior)
        finally:
            self.sock.settimeout(prior)
        if self.in_body:
            self.deadline += len(data) / MIN_RATE
        return data

    def _wait_for(self, size: int, flags, prior: float | None) -> bytes:
        """Wait for the client's next bytes until the deadline (or the caller's own shorter timeout), as one of the
        process's waiting connections."""
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise self._late()
        self.sock.settimeout(remaining if prior is None else min(prior, remaining))
        try:
            self.waiting.enter(self)
            data = self.sock.recv(size, *flags)
        except TimeoutError:
            if time.monotonic() < self.deadline:
                raise  # the caller's shorter timeout, which it handles
            raise self._late() from None
        except OSError:
            if self.evicted:  # gevent wakes a read on a socket shut down under it with EBADF
                raise self.cut() from None
            raise
        finally:
            self.waiting.leave(self)
        if self.evicted:  # the read side was shut down to wake this read: b"" is not the client's end
            raise self.cut()
        return data

    def shutdown(self, how: int) -> None:
        if how != socket.SHUT_RD:
            self.closing = True
        self.sock.shutdown(how)

    def sendall(self, data, *flags):
        return self._write(self.sock.sendall, len(data), data, *flags)

    def sendfile(self, file, offset=0, count=None):
        return self._write(self.sock.sendfile, count or 0, file, offset, count)

    def _write(self, send, size: int, *args):
        """A client that stops reading would hold a large answer's write (and its connection) forever: bound it."""
        self.sent = True
        prior = self.sock.gettimeout()
        limit = self.limits.body + size / MIN_RATE
        self.sock.settimeout(limit if prior is None else min(prior, limit))
        try:
            return send(*args)
        except TimeoutError:
            # As a client that went away: gunicorn closes the connection and logs it at debug, not as a crash.
            raise BrokenPipeError(errno.EPIPE, f"the client took none of the answer for {limit:.0f} s") from None
        finally:
            self.sock.settimeout(prior)

    def _late(self) -> ClientTimeout:
        self.timed_out = True
        seconds = self.limits.body if self.in_body else self.limits.head
        what = "body" if self.in_body else "head"
        return ClientTimeout(f"the request {what} did not arrive within {seconds:g} s", self.in_body)

    def cut(self) -> ClientTimeout:
        self.timed_out = self.evicted = True
        return ClientTimeout("too many clients are slow to send their requests; this one waited longest", self.in_body)

    def evict(self) -> None:
        """Cut this connection from another greenlet or thread: shutting down its read side wakes its read."""
        self.evicted = True
        try:
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass


def read_small_body(req) -> None:
    """Replace a small declared-length body by its bytes, read now (under the body deadline)."""
    reader = getattr(req.body, "reader", None)
    if not isinstance(reader, LengthReader) or not 0 < reader.length <= PREBUFFER:
        return
    if any(name == "EXPECT" for name, _ in req.headers):  # the client waits for the app's 100 Continue first
        return
    req.body = Body(io.BytesIO(req.body.read(reader.length)))


class _StatusLine:
    """Stands in for the client socket while gunicorn's handle_error picks the status, logs and access-logs; the HTML
    it would write is dropped for LeadPulse's JSON."""

    status, reason = 500, "Internal Server Error"

    def gettimeout(self):
        return None

    def setblocking(self, flag):
        pass

    def sendall(self, data):
        _, status, self.reason = data.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        self.status = int(status)


def json_error(status: int, reason: str, message: str, development: bool) -> bytes:
    """A whole HTTP answer in LeadPulse's error envelope, with the security headers, closing the connection."""
    body = (json.dumps(error_payload(HTTP_CODES.get(status, "error"), message), separators=(",", ":")) + "\n").encode()
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        *(f"{name}: {value}" for name, value in security_headers(development)),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


class BoundedWorker:
    """What both worker classes add to gunicorn's: the deadlines, the cap on waiting connections, JSON errors."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings = Settings.from_env()
        self.limits = Limits(settings.web_header_timeout, settings.web_body_timeout, self.cfg.keepalive)
        self.development = settings.development
        # At most all slots but one, so that some slot is always free for a client that sends its request at once.
        wanted = settings.web_slow_clients or self.capacity() // 2
        self.slow_clients = max(1, min(wanted, self.capacity() - 1))
        self.waiting = None

    def capacity(self) -> int:
        raise NotImplementedError

    def run(self):
        self.waiting = WaitingReads(self.slow_clients)  # here, after gevent patched threading in this process
        super().run()

    def handle_error(self, req, client, addr, exc):
        if isinstance(exc, ClientTimeout):
            self.log.debug("Slow client %s: %s", (addr or ("",))[0], exc)
            # A late head is closed without a word, as gunicorn closes an idle connection; a late body gets a 408
            # unless its answer has begun. Either way the connection then closes.
            if exc.in_body and not getattr(client, "sent", True):
                self._send(client, json_error(408, "Request Timeout", str(exc), self.development))
            return
        status = _StatusLine()
        super().handle_error(req, status, addr, exc)
        detail = str(exc)[:300] if 400 <= status.status < 500 else ""  # a 5xx says nothing of our insides
        message = f"{status.reason}: {detail}" if detail else status.reason
        self._send(client, json_error(status.status, status.reason, message, self.development))

    def _send(self, client, data: bytes) -> None:
        try:
            util.write_nonblock(client, data)  # never waits on a client that does not read
        except OSError:
            self.log.debug("Failed to send error message.")


class GeventWorker(BoundedWorker, ggevent.GeventWorker):
    """gunicorn's gevent worker with bounded reads (PostgreSQL installs)."""

    def capacity(self) -> int:
        return self.cfg.worker_connections

    def handle(self, listener, client, addr):
        super().handle(listener, ClientSocket(client, self.waiting, self.limits), addr)

    def timeout_ctx(self):
        """The ClientSocket bounds each head (gunicorn's keep-alive timer would also cut a first head at 2 s)."""
        return contextlib.nullcontext()

    def handle_request(self, listener_name, req, sock, addr):
        sock.expect(self.limits.body, body=True)
        try:
            read_small_body(req)
            super().handle_request(listener_name, req, sock, addr)
        finally:
            sock.expect(self.limits.keepalive, body=False)
        if sock.timed_out:  # a body cut short: where the next request would start is unknown
            raise StopIteration()
        return True


class ThreadWorker(BoundedWorker, gthread.ThreadWorker):
    """gunicorn's threaded worker with bounded reads (the embedded SQLite default)."""

    def capacity(self) -> int:
        return self.cfg.threads

    def handle(self, conn):
        if not isinstance(conn.sock, ClientSocket):
            conn.sock = ClientSocket(conn.sock, self.waiting, self.limits)
        elif conn.initialized:  # a kept-alive connection the poller saw readable: a new head
            conn.sock.expect(self.limits.head, body=False)
        if not conn.initialized and not conn.data_ready and not conn.wait_for_data(0):
            # No bytes yet: wait in gunicorn's poller, not for up to 5 s in one of the few threads, which a handful
            # of silent connections would otherwise keep busy.
            return gthread._DEFER
        return super().handle(conn)

    def handle_request(self, req, conn):
        conn.sock.expect(self.limits.body, body=True)
        try:
            read_small_body(req)
            keepalive = super().handle_request(req, conn)
        finally:
            conn.sock.expect(self.limits.head, body=False)
        return keepalive and not conn.sock.timed_out
