"""Prometheus metrics with the reference's names; multiprocess-safe under gunicorn."""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import GaugeMetricFamily

disable_created_metrics()

EVENTS_INGESTED = Counter("events_ingested_total", "Total number of events ingested (accepted).")
EVENTS_DUPLICATE = Counter("events_duplicate_total", "Events answered as duplicates of an idempotency key.")
HTTP_REQUESTS = Counter("http_requests_total", "Total number of HTTP requests by status code and method.", ["code", "method"])
EVENT_TO_SLACK = Histogram(
    "event_to_slack_latency_seconds",
    "Latency in seconds from event ingestion to Slack notification.",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)


class BacklogCollector:
    """queue_depth and friends read at scrape time from the database and Redis, so they are true."""

    def __init__(self, app_state):
        self.state = app_state

    def collect(self):
        from sqlalchemy import func, select

        from models.events import PENDING, Event

        depth = GaugeMetricFamily("queue_depth", "Current depth of the async processing queue.")
        jobs = GaugeMetricFamily("rq_queue_jobs", "Jobs waiting in the RQ queue.")
        try:
            with self.state.Session() as s:
                depth.add_metric([], s.execute(select(func.count()).select_from(Event).where(Event.status == PENDING)).scalar())
        except Exception:
            depth.add_metric([], float("nan"))
        try:
            jobs.add_metric([], self.state.redis.llen(f"rq:queue:{self.state.settings.queue_name}"))
        except Exception:
            jobs.add_metric([], float("nan"))
        yield depth
        yield jobs


def render(app_state) -> bytes:
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (EVENTS_INGESTED, EVENTS_DUPLICATE, HTTP_REQUESTS, EVENT_TO_SLACK):
            registry.register(collector)
    registry.register(BacklogCollector(app_state))
    return generate_latest(registry)
