"""POST /ingest's hot path below Flask: a plain, valid event from a cached API credential is stored and answered here.

Single-event ingest is the busiest request, and Flask's machinery around it (request context, routing, hooks,
webargs) cost more CPU than checking and storing the event. The lane answers only what it fully accepts with the
same code the view uses (auth; rate limits; the ingest service's checks, group commit and 202 body; the request
log); anything else (another route, a body to explain, a Bearer token, a credential not cached yet) goes to the
Flask app untouched, so every refusal is worded in one place.
"""

from __future__ import annotations

import io
import time

from werkzeug.http import HTTP_STATUS_CODES

from webapp import rate_limits, request_log
from webapp.auth import cached_basic_principal
from webapp.blueprint import strict_json_loads
from webapp.errors import ApiError, as_api_error, error_payload
from webapp.services.ingest import ITEM_SCHEMA, commit_events, ingested_payload, to_incoming
from worker.http_policy import security_headers

PATHS = frozenset(("/ingest", "/events"))


class IngestLane:
    def __init__(self, app, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app  # Flask's own, for everything the lane does not answer
        self.state = app.extensions["leadpulse"]
        self.security_headers = security_headers(self.state.settings.development)
        self.served = 0  # requests answered here (tests read it to know which path answered)

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") not in PATHS or self.app.debug:
            return self.wsgi_app(environ, start_response)
        t0 = time.perf_counter()
        # Credentials before the body: a caller the lane cannot vouch for never makes it buffer up to 2 MB.
        principal = cached_basic_principal(environ.get("HTTP_AUTHORIZATION"))
        if principal is not None and ("ingest" not in principal.grants or principal.is_write_key):
            principal = None  # Flask's checks refuse it, or check its origin, in their one place (webapp/auth.py)
        length = self._length(environ) if principal is not None else None
        if length is None:
            return self.wsgi_app(environ, start_response)
        try:  # the address's and the credential's allowances in one Redis call, before the body is read
            limits = rate_limits.lane_limits(self.state, environ, principal)
        except ApiError as err:
            request_log.record("POST", environ["PATH_INFO"], err.status, request_log.elapsed_ms(t0), principal)
            self.served += 1
            payload = error_payload(err.code, err.message, err.details)
            return self._json(err.status, payload, err.headers)(environ, start_response)
        body = environ["wsgi.input"].read(length)
        environ["wsgi.input"] = io.BytesIO(body)  # for Flask, should the lane hand the request on
        answer = (
            self._answer(environ, principal, body, t0, rate_limits.headers(limits)) if len(body) == length else None
        )
        if answer is None:
            return self.wsgi_app(environ, start_response)
        self.served += 1
        return answer(environ, start_response)

    def _length(self, environ) -> int | None:
        """The declared length of a JSON body the view would read whole; None for any other request."""
        if (
            environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != "application/json"
            or "HTTP_TRANSFER_ENCODING" in environ
        ):
            return None
        declared = environ.get("CONTENT_LENGTH", "")
        if not (declared.isascii() and declared.isdigit() and len(declared) <= 12):
            return None
        length, limit = int(declared), self.app.config["MAX_CONTENT_LENGTH"]
        return length if 0 < length and (limit is None or length <= limit) else None

    def _answer(self, environ, principal, body: bytes, t0: float, limit_headers: dict):
        """The response to an event the lane accepts, else None (Flask then says what is wrong, or fails as it would)."""
        try:
            data = ITEM_SCHEMA.load(strict_json_loads(body))
            incoming = to_incoming(data, environ.get("HTTP_IDEMPOTENCY_KEY"), self.state.settings.max_metadata_bytes)
        except Exception:
            return None
        try:
            result = commit_events(self.state, principal.org_id, principal.unit_id, [incoming], quota_taken=True)[0]
            status, payload, headers = 202, ingested_payload(incoming, result), limit_headers
        except Exception as exc:  # answered as the Flask app's error handlers answer it
            err = as_api_error(exc)
            status, payload = err.status, error_payload(err.code, err.message, err.details)
            headers = {**limit_headers, **err.headers}
        request_log.record("POST", environ["PATH_INFO"], status, request_log.elapsed_ms(t0), principal)
        return self._json(status, payload, headers)

    def _json(self, status: int, payload: dict, headers: dict):
        """What jsonify answers outside debug mode (compact JSON and a newline), without a werkzeug Response (~25 us)."""
        body = (self.app.json.dumps(payload, separators=(",", ":")) + "\n").encode()
        head = [
            ("Content-Type", self.app.json.mimetype),
            ("Content-Length", str(len(body))),
            *headers.items(),
            *self.security_headers,
        ]
        status_line = f"{status} {HTTP_STATUS_CODES[status].upper()}"

        def respond(environ, start_response):
            start_response(status_line, head)
            return [body]

        return respond
