"""Health, home and metrics: the unauthenticated operational surface."""

from __future__ import annotations

from flask import Response, jsonify, request

from webapp import metrics
from webapp.app_state import state
from webapp.auth import public
from webapp.blueprint import Blueprint

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


@blp.route("/metrics")
@public
def prometheus_metrics():
    return Response(metrics.render(state()), mimetype="text/plain; version=0.0.4")
