"""One log line per request, the http_requests_total counter and the audit log's entry; never headers or bodies
(secrets)."""

from __future__ import annotations

import logging
import time

from flask import g, request

from webapp import audit_trail, metrics

log = logging.getLogger("leadpulse.http")
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))  # any other is counted as "other"


def install(app) -> None:
    """Before every other hook, so that a request refused by one (auth, a body that is not JSON) is timed too."""

    @app.before_request
    def _start():
        g._t0 = time.perf_counter()

    @app.after_request
    def _done(response):
        latency_ms = elapsed_ms(g.get("_t0"))
        record(request.method, request.path, response.status_code, latency_ms, g.get("principal"))
        audit_trail.capture(response.status_code, latency_ms)
        return response

    audit_trail.install(app)


def elapsed_ms(t0: float | None) -> float:
    """Milliseconds since t0 (0 when the request was never timed)."""
    return (time.perf_counter() - t0) * 1000 if t0 is not None else 0.0


def record(method: str, path: str, status: int, latency_ms: float, principal) -> None:
    """Count and log one answered request (also for POST /ingest's lane, which answers outside Flask)."""
    # A label per unknown method would let any caller add series to /metrics without bound.
    metrics.HTTP_REQUESTS.labels(code=str(status), method=method if method in METHODS else "other").inc()
    if log.isEnabledFor(logging.INFO):
        who = (principal.credential_id or principal.member_id) if principal else "-"
        log.info("%s %s %s %.1fms by=%s", method, path, status, latency_ms, who)
