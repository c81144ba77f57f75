"""One log line per request, and the http_requests_total counter; never headers or bodies (secrets)."""

from __future__ import annotations

import logging
import time

from flask import g, request

from webapp import metrics

log = logging.getLogger("leadpulse.http")
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))  # any other is counted as "other"


def install(app) -> None:
    @app.before_request
    def _start():
        g._t0 = time.perf_counter()

    @app.after_request
    def _done(response):
        record(request.method, request.path, response.status_code, g.get("_t0"), g.get("principal"))
        return response


def record(method: str, path: str, status: int, t0: float | None, principal) -> None:
    """Count and log one answered request (also for POST /ingest's lane, which answers outside Flask)."""
    # A label per unknown method would let any caller add series to /metrics without bound.
    metrics.HTTP_REQUESTS.labels(code=str(status), method=method if method in METHODS else "other").inc()
    if log.isEnabledFor(logging.INFO):
        elapsed = (time.perf_counter() - (t0 or time.perf_counter())) * 1000
        who = (principal.credential_id or principal.member_id) if principal else "-"
        log.info("%s %s %s %.1fms by=%s", method, path, status, elapsed, who)
