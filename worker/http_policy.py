"""What every HTTP answer carries, whether the Flask app or gunicorn itself writes it: the JSON error envelope and the
security headers (docs/http_server.md).

It sits below webapp/ because gunicorn's own worker classes (worker/web_server.py) use it too, and gunicorn imports
those in its master process, which must not load the Flask stack before gevent patches the workers.
"""

from __future__ import annotations

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    417: "expectation_failed",
    429: "rate_limited",
    431: "header_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def error_payload(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details or {}}}


class ClientTimeout(Exception):
    """The client did not send its request (head or body) in time, or was cut to make room: answered 408, then closed.

    Not an OSError on purpose: Werkzeug turns a failing read that is one into a 400 'client disconnected'."""

    def __init__(self, message: str, in_body: bool):
        super().__init__(message)
        self.in_body = in_body  # a body is answered 408; a head was never a request, so nothing is said


# An API answer is data, never a page: it may load nothing, be framed by nothing, and send no referrer onwards.
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# A page (/, /docs) loads only this site's own scripts, styles, images and fonts, runs no inline script, and calls
# only this site (Swagger UI fetches /openapi.json and sends "Try it out" requests here).
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
# A year, this host only: includeSubDomains or preload would bind hosts LeadPulse does not know about.
HSTS = "max-age=31536000"


def _headers(development: bool, page: bool) -> tuple[tuple[str, str], ...]:
    headers = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Content-Security-Policy", PAGE_CSP if page else API_CSP),
    ]
    if not development:  # `make run` serves plain http on localhost, where HSTS would pin the browser to https
        headers.append(("Strict-Transport-Security", HSTS))
    return tuple(headers)


_SECURITY_HEADERS = {(dev, page): _headers(dev, page) for dev in (False, True) for page in (False, True)}


def security_headers(development: bool, page: bool = False) -> tuple[tuple[str, str], ...]:
    """The security headers of one answer; page=True for HTML."""
    return _SECURITY_HEADERS[development, page]
