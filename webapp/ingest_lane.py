"""POST /ingest's hot path below Flask: a plain, valid event from a cached API credential is stored and answered here.

Single-event ingest is the busiest request, and Flask's machinery around it (request context, routing, hooks,
webargs) cost more CPU than checking and storing the event. The lane answers only what it fully accepts with the
same code the view uses (auth, schema, to_incoming, the group commit, the 202 body, the request log); anything
else (another route, a body to explain, a Bearer token, a credential not cached yet) goes to the Flask app
untouched, so every refusal is worded in one place.
"""
from __future__ import annotations

import io
import time

from marshmallow import ValidationError

from webapp import request_log
from webapp.auth import cached_basic_principal
from webapp.blueprint import strict_json_loads
from webapp.errors import ApiError, as_api_error, error_payload
from webapp.resources.ingest import ITEM_SCHEMA, commit_events, ingested_payload, to_incoming

PATHS = frozenset(("/ingest", "/events"))


class IngestLane:
    def __init__(self, app, wsgi_app):
        self.app = app
        self.wsgi_app = wsgi_app  # Flask's own, for everything the lane does not answer
        self.state = app.extensions["leadpulse"]
        self.served = 0  # requests answered here (tests read it to know which path answered)

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") not in PATHS:
            return self.wsgi_app(environ, start_response)
        t0 = time.perf_counter()
        body = self._body(environ)
        answer = self._answer(environ, body, t0) if body else None
        if answer is None:
            if body is not None:
                environ["wsgi.input"] = io.BytesIO(body)  # Flask reads the body the lane consumed
            return self.wsgi_app(environ, start_response)
        self.served += 1
        return answer(environ, start_response)

    def _body(self, environ) -> bytes | None:
        """The whole body of a JSON request of a declared, allowed length; None (body unread) for any other."""
        if environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower() != "application/json":
            return None
        length = environ.get("CONTENT_LENGTH", "")
        if not length.isdigit() or not 0 < int(length) <= self.app.config["MAX_CONTENT_LENGTH"] \
                or "HTTP_TRANSFER_ENCODING" in environ:
            return None
        try:
            return environ["wsgi.input"].read(int(length))
        except Exception:  # the client went away mid-body: Flask finds the body short and says so
            return b""

    def _answer(self, environ, body: bytes, t0: float):
        """The response to a request the lane accepts, else None."""
        principal = cached_basic_principal(environ.get("HTTP_AUTHORIZATION"))
        if principal is None:
            return None
        try:
            data = ITEM_SCHEMA.load(strict_json_loads(body))
            incoming = to_incoming(data, environ.get("HTTP_IDEMPOTENCY_KEY"), self.state.settings.max_metadata_bytes)
        except (ValueError, RecursionError, ValidationError, ApiError):  # JSONDecodeError and UnicodeDecodeError too
            return None
        try:
            result = commit_events(self.state, principal.org_id, principal.unit_id, [incoming])[0]
            status, payload, headers = 202, ingested_payload(incoming, result), {}
        except Exception as exc:  # answered as the Flask app's error handlers answer it
            err = as_api_error(exc)
            status, payload, headers = err.status, error_payload(err.code, err.message, err.details), err.headers
        response = self.app.json.response(payload)
        response.status_code = status
        response.headers.update(headers)
        request_log.record("POST", environ["PATH_INFO"], status, t0, principal)
        return response
