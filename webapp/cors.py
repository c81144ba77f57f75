"""CORS for the routes a web page may call with a write key: a preflight carries no credential, so it is answered
for any origin; the real request is checked against the key's origins (webapp/auth.authorize) and only an origin
the key lists may read the answer."""

from __future__ import annotations

from flask import current_app, g, request

from webapp import access

ALLOWED_HEADERS = "Authorization, Content-Type, Idempotency-Key"
# A page's script may read how long to wait (a 429's Retry-After) and what is left (webapp/rate_limits.py).
EXPOSED_HEADERS = "Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy"


def allow_write_key_origins(response):
    origin = request.headers.get("Origin")
    if not origin or request.url_rule is None:
        return response
    if not access.browser_allowed(current_app.view_functions.get(request.endpoint), "POST"):
        return response
    response.vary.add("Origin")
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = "POST"
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
        return response
    caller = g.get("principal")
    if caller is not None and caller.is_write_key and origin in caller.origins:
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return response
