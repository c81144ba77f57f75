"""One log line per request, and the http_requests_total counter; never headers or bodies (secrets)."""
from __future__ import annotations

import logging
import time

from flask import g, request

from webapp import metrics

log = logging.getLogger("leadpulse.http")


def install(app) -> None:
    @app.before_request
    def _start():
        g._t0 = time.perf_counter()

    @app.after_request
    def _done(response):
        metrics.HTTP_REQUESTS.labels(code=str(response.status_code), method=request.method).inc()
        if log.isEnabledFor(logging.INFO):
            elapsed = (time.perf_counter() - g.get("_t0", time.perf_counter())) * 1000
            p = g.get("principal")
            who = (p.credential_id or p.member_id) if p else "-"
            log.info("%s %s %s %.1fms by=%s", request.method, request.path, response.status_code, elapsed, who)
        return response
