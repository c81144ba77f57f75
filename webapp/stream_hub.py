"""One Redis subscription per web process, fanned out by OU to its /stream clients (not a connection per client)."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time

from worker.stream import channel

log = logging.getLogger("leadpulse.stream")
PREFIX = channel("")
LOST = None  # put to a client when the subscription broke or it fell behind: it ends, and EventSource reconnects
CLIENT_BACKLOG = 1000  # messages a client may have unread before it is dropped (a stalled reader costs bounded memory)
PING_SECONDS = 15  # a link that answers nothing (not even a ping) for twice this long is treated as lost


class StreamUnavailable(Exception):
    """Redis did not confirm the subscription in time."""


class StreamHub:
    def __init__(self, redis):
        self.redis = redis
        self._lock = threading.Lock()
        self._clients: dict[str, set[queue.Queue]] = {}
        self._pid: int | None = None
        self._ready = threading.Event()

    def join(self, unit_id: str, timeout: float = 5.0) -> queue.Queue:
        """A queue of this OU's raw messages; once it returns, nothing published afterwards is missed."""
        q: queue.Queue = queue.Queue(CLIENT_BACKLOG)
        with self._lock:
            self._clients.setdefault(unit_id, set()).add(q)
            if self._pid != os.getpid():  # first client of this process (a forked worker starts its own)
                self._pid, self._ready = os.getpid(), threading.Event()
                threading.Thread(target=self._listen, name="leadpulse-stream", daemon=True).start()
        if not self._ready.wait(timeout):
            self.leave(unit_id, q)
            raise StreamUnavailable("live updates are unavailable (Redis did not answer)")
        return q

    def leave(self, unit_id: str, q: queue.Queue) -> None:
        with self._lock:
            clients = self._clients.get(unit_id)
            if clients is not None:
                clients.discard(q)
                if not clients:
                    del self._clients[unit_id]

    def listeners(self, unit_id: str) -> int:
        with self._lock:
            return len(self._clients.get(unit_id, ()))

    def _deliver(self, unit_id: str, data: bytes) -> None:
        with self._lock:
            clients = list(self._clients.get(unit_id, ()))
        for q in clients:
            try:
                q.put_nowait(data)
            except queue.Full:  # a client not reading: drop it, and tell it to go (it reconnects if it is alive)
                self.leave(unit_id, q)
                with q.mutex:
                    q.queue.clear()
                q.put_nowait(LOST)

    def _listen(self) -> None:
        """Every OU's channel through one pattern subscription; messages for OUs nobody here watches are dropped."""
        while True:
            pubsub = self.redis.pubsub()
            try:
                pubsub.psubscribe(PREFIX + "*")
                heard = pinged = time.monotonic()
                while True:
                    message = pubsub.get_message(timeout=1.0)  # a short wait: the client's socket_timeout stays
                    now = time.monotonic()
                    if message is None:
                        if now - heard > 2 * PING_SECONDS:  # open but silent, even to pings: a dead link
                            raise ConnectionError("no answer from Redis")
                        if now - pinged > PING_SECONDS:
                            pubsub.ping()
                            pinged = now
                        continue
                    heard = now
                    if message["type"] == "psubscribe":
                        self._ready.set()
                    elif message["type"] == "pmessage":
                        self._deliver(message["channel"].decode()[len(PREFIX) :], message["data"])
            except Exception as exc:  # Redis went away: clients may have missed news, so they reconnect
                log.warning("stream subscription lost (%s); resubscribing", exc.__class__.__name__)
                self._ready.clear()
                with self._lock:
                    everyone = [q for clients in self._clients.values() for q in clients]
                    if not everyone:  # nobody listens: stop; the next client starts a new subscription
                        self._pid = None
                        return
                for q in everyone:
                    try:
                        q.put_nowait(LOST)
                    except queue.Full:  # dropped already, with LOST queued
                        pass
                time.sleep(1)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass
