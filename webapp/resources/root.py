"""Health, home and metrics: the unauthenticated operational surface."""

from __future__ import annotations

import hmac
import ipaddress

from flask import Response, jsonify, request
from marshmallow import fields

from webapp import metrics
from webapp.app_state import state
from webapp.auth import public
from webapp.blueprint import Blueprint
from webapp.errors import ApiError
from webapp.schema_base import StrictSchema

blp = Blueprint("root", __name__, description="Health and metrics")

HOME_HTML = """<!doctype html><html><head><title>LeadPulse</title></head>
<body><h1>LeadPulse</h1><p>Engagement scoring is running. API docs: <a href="/docs">/docs</a>,
spec: <a href="/openapi.json">/openapi.json</a>, metrics: <a href="/metrics">/metrics</a>.</p></body></html>"""


TEXT = {"type": "string"}


class HealthSchema(StrictSchema):
    status = fields.String(metadata={"description": "ok"})


class HomeSchema(HealthSchema):
    page = fields.String(metadata={"description": "home"})


def _wants_html() -> bool:
    return "text/html" in request.headers.get("Accept", "")


def _html_or(schema):
    """Documents both answers of a page: this JSON, or the HTML page to a browser (Accept: text/html)."""
    said = "the status as JSON; the HTML page to Accept: text/html"

    def decorator(view):
        view = blp.alt_response(200, schema=TEXT, content_type="text/html", description=said)(view)
        return blp.alt_response(200, schema=schema, description=said, success=True)(view)

    return decorator


@blp.route("/")
@_html_or(HealthSchema)
@public
def index():
    if _wants_html():
        return Response(HOME_HTML, mimetype="text/html")
    return jsonify({"status": "ok"})


@blp.route("/home")
@_html_or(HomeSchema)
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
@blp.alt_response(200, schema=TEXT, content_type="text/plain", description="Prometheus text format", success=True)
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
