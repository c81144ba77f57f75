"""Prometheus metrics with the reference's names; multiprocess-safe under gunicorn."""
from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

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

        from models.base import utcnow
        from models.events import PENDING, Event
        from worker.wakeup import METRICS_KEY

        depth = GaugeMetricFamily("queue_depth", "Current depth of the async processing queue.")
        lag = GaugeMetricFamily("scoring_lag_seconds", "Age of the oldest event waiting to be scored.")
        jobs = GaugeMetricFamily("rq_queue_jobs", "Jobs waiting in the RQ queue.")
        try:
            with self.state.Session() as s:
                depth.add_metric([], s.execute(select(func.count()).select_from(Event).where(Event.status == PENDING)).scalar())
                oldest = s.execute(select(Event.received_at).where(Event.status == PENDING).order_by(Event.id).limit(1)).scalar()
                lag.add_metric([], (utcnow() - oldest).total_seconds() if oldest else 0.0)
        except Exception:
            depth.add_metric([], float("nan"))
            lag.add_metric([], float("nan"))
        yield depth
        yield lag
        try:
            jobs.add_metric([], self.state.redis.llen(f"rq:queue:{self.state.settings.queue_name}"))
            counters = {k.decode(): int(v) for k, v in self.state.redis.hgetall(METRICS_KEY).items()}
        except Exception:
            jobs.add_metric([], float("nan"))
            counters = None
        yield jobs
        if counters is not None:
            for name, help_text in (
                ("events_scored", "Events scored by the workers."),
                ("scoring_batches", "Scoring batches committed."),
                ("level_changes", "Lead level changes made by scoring."),
                ("replays", "Leads rescored from the start because an event arrived late."),
            ):
                yield CounterMetricFamily(f"{name}_total", help_text, value=counters.get(name, 0))


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
