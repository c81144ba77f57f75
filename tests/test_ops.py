"""Operational surface: health, home, metrics with real values, OpenAPI and docs, request logs."""

import logging
from dataclasses import replace
from datetime import timedelta

from sqlalchemy import func, select, update

from models.base import utcnow
from models.events import Event
from tests.conftest import Api
from tests.helpers import ingest
from webapp import create_app


def test_health_and_home(client, clean):
    assert client.get("/").json == {"status": "ok"}
    assert client.get("/home").json == {"status": "ok", "page": "home"}
    r = client.get("/home", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.mimetype == "text/html" and b"LeadPulse" in r.data


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_metrics_have_reference_names_and_real_values(api, client, run_worker):
    text = client.get("/metrics").get_data(as_text=True)
    before = metric(text, "events_ingested_total")
    for name in ("events_ingested_total", "queue_depth", "http_requests_total", "event_to_slack_latency_seconds"):
        assert f"# TYPE {name}" in text
    for i in range(3):
        ingest(api, f"l{i}", "page_view")
    api.post("/ingest", json={"lead_id": "l0", "event_type": "page_view", "event_id": "same"})
    api.post("/ingest", json={"lead_id": "l0", "event_type": "page_view", "event_id": "same"})
    text = client.get("/metrics").get_data(as_text=True)
    assert metric(text, "events_ingested_total") == before + 4
    assert metric(text, "queue_depth") == 4
    assert 'http_requests_total{code="202",method="POST"}' in text
    assert metric(text, "scoring_lag_seconds") >= 0
    run_worker()
    text = client.get("/metrics").get_data(as_text=True)
    assert metric(text, "queue_depth") == 0 and metric(text, "scoring_lag_seconds") == 0
    assert metric(text, "events_scored_total") == 4 and metric(text, "scoring_batches_total") >= 1


def test_scoring_lag_is_the_age_of_the_oldest_pending_event_whichever_ou_holds_it(app, api, client, other_tenant):
    ingest(Api(client, other_tenant), "theirs", "page_view")  # the oldest: another OU's
    ingest(api, "ours", "page_view")
    with app.extensions["leadpulse"].Session() as s, s.begin():
        first = s.execute(select(func.min(Event.id))).scalar()
        s.execute(update(Event).where(Event.id == first).values(received_at=utcnow() - timedelta(hours=1)))
    lag = metric(client.get("/metrics").get_data(as_text=True), "scoring_lag_seconds")
    assert 3600 <= lag < 3660


def test_openapi_documents_the_api(client, clean):
    spec = client.get("/openapi.json").json
    for path in (
        "/ingest",
        "/events",
        "/leads",
        "/engagement-levels",
        "/rulesets",
        "/rules",
        "/secrets",
        "/org-units/active",
    ):
        assert path in spec["paths"], path
    assert "EventIn" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


def test_request_log_never_contains_secrets(api, tenant, caplog):
    caplog.set_level(logging.INFO, logger="leadpulse")
    api.post("/ingest", json={"lead_id": "l", "event_type": "x"})
    api.get("/leads")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "POST /ingest 202" in logged
    assert tenant.client_secret not in logged and "Authorization" not in logged


def test_no_free_database_connection_is_a_503_not_a_500(settings, tenant):
    """Many concurrent requests (gevent) can outnumber the pool: one that waits too long may retry."""
    import os

    from sqlalchemy import create_engine

    from models import db

    url = settings.database_url + "?application_name=tiny-pool"
    engine = db._engines[(os.getpid(), url)] = create_engine(url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        app = create_app(replace(settings, database_url=url))
        with engine.connect():  # the only connection, held
            r = app.test_client().get("/leads", headers=tenant.auth)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1" and r.json["error"]["code"] == "unavailable"
        assert app.test_client().get("/leads", headers=tenant.auth).status_code == 200  # free again: served
    finally:
        db._engines.pop((os.getpid(), url)).dispose()


def test_unknown_methods_add_no_series_to_metrics(client, clean):
    """Each made-up method used to become a label value: a caller could grow /metrics without bound."""
    for n in range(5):
        assert client.open("/", method=f"ZZ{n}").status_code == 405
    text = client.get("/metrics").get_data(as_text=True)
    assert "ZZ" not in text
    assert 'http_requests_total{code="405",method="other"}' in text


def test_metrics_are_readable_from_this_host_or_with_the_metrics_token(settings, clean):
    from dataclasses import replace
    from itertools import product

    from webapp import create_app

    remote = {"REMOTE_ADDR": "203.0.113.9"}
    plain = create_app(settings).test_client()
    for local in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):  # a local Prometheus or agent
        assert plain.get("/metrics", environ_base={"REMOTE_ADDR": local}).status_code == 200
    r = plain.get("/metrics", environ_base=remote)
    assert r.status_code == 403 and "LEADPULSE_METRICS_TOKEN" in r.json["error"]["message"]
    guarded = create_app(replace(settings, metrics_token="scrape-me")).test_client()
    for headers, where in product(
        ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic scrape-me"}),
        (remote, {"REMOTE_ADDR": "127.0.0.1"}),  # behind a proxy on this host, everyone looks local
    ):
        r = guarded.get("/metrics", headers=headers, environ_base=where)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == "Bearer"
    r = guarded.get("/metrics", headers={"Authorization": "Bearer scrape-me"}, environ_base=remote)
    assert r.status_code == 200 and b"http_requests_total" in r.data
