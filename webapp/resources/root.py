"""Health, home and metrics: the unauthenticated operational surface."""

from __future__ import annotations

import hmac
import ipaddress

from flask import Response, jsonify, request

from webapp import metrics
from webapp.app_state import state
from webapp.auth import public
from webapp.blueprint import Blueprint
from webapp.errors import ApiError

blp = Blueprint("root", __name__, description="Health and metrics")

HOME_HTML = """<!doctype html><html><head><title>LeadPulse</title></head>
<body><h1>LeadPulse</h1><p>Engagement scoring is running. API docs: <a href="/docs">/docs</a>,
spec: <a href="/openapi.json">/openapi.json</a>, metrics: <a href="/metrics">/metrics</a>.</p></body></html>"""


def _wants_html() -> bool:
    return "text/html" in request.headers.get("Accept", "")


@blp.route("/")
@public
def index():
    if _wants_html():
        return Response(HOME_HTML, mimetype="text/html")
    return jsonify({"status": "ok"})


@blp.route("/home")
@public
def home():
    if _wants_html():
        return Response(HOME_HTML, mimetype="text/html")
    return jsonify({"status": "ok", "page": "home"})


def _loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


@blp.route("/metrics", statuses=(401, 403))
@public
def prometheus_metrics():
    """Counters carry no tenant data but do show an instance's volume and health: with LEADPULSE_METRICS_TOKEN set,
    only a Bearer of it may read them (behind a proxy on this host every caller looks local); without it, only this
    host (a local Prometheus or agent). See docs/guarantees.md."""
    token = state().settings.metrics_token
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise ApiError(
                401, "unauthorized", "give the metrics token as a Bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
    elif not _loopback(request.remote_addr):
        raise ApiError(
            403, "forbidden", "metrics are readable from this host only unless LEADPULSE_METRICS_TOKEN is set"
        )
    return Response(metrics.render(state()), mimetype="text/plain; version=0.0.4")
