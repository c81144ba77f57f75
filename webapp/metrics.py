"""Prometheus metrics with the reference's names; multiprocess-safe under gunicorn."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, disable_created_metrics, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from integrations import redis_keys as keys
from models.base import utcnow
from models.score_batch import oldest_pending, pending_count
from worker.jobs import LATENCY_BUCKETS
from worker.registry import queue_depth

disable_created_metrics()

EVENTS_INGESTED = Counter("events_ingested_total", "Total number of events ingested (accepted).")
EVENTS_DUPLICATE = Counter("events_duplicate_total", "Events answered as duplicates of an idempotency key.")
WEBHOOKS_REJECTED = Counter(
    "webhook_deliveries_rejected_total",
    "Inbound webhook deliveries refused, by source kind and reason.",
    ["source", "reason"],
)
RATE_LIMITED = Counter(
    "rate_limited_total",
    "Requests over a rate limit, by limit and mode (enforce: refused with 429; observe: let through).",
    ["limit", "mode"],
)
HTTP_REQUESTS = Counter(
    "http_requests_total", "Total number of HTTP requests by status code and method.", ["code", "method"]
)


class BacklogCollector:
    """queue_depth and friends read at scrape time from the database and Redis, so they are true."""

    def __init__(self, app_state):
        self.state = app_state

    def collect(self):
        depth = GaugeMetricFamily("queue_depth", "Current depth of the async processing queue.")
        lag = GaugeMetricFamily("scoring_lag_seconds", "Age of the oldest event waiting to be scored.")
        jobs = GaugeMetricFamily("rq_queue_jobs", "Jobs waiting in the RQ queue.")
        try:
            with self.state.Session() as s:
                depth.add_metric([], pending_count(s))
                oldest = oldest_pending(s)
                lag.add_metric([], (utcnow() - oldest).total_seconds() if oldest else 0.0)
        except Exception:
            depth.add_metric([], float("nan"))
            lag.add_metric([], float("nan"))
        yield depth
        yield lag
        try:
            jobs.add_metric([], queue_depth(self.state.redis, self.state.settings.queue_name))
            counters = {k.decode(): int(v) for k, v in self.state.redis.hgetall(keys.METRICS()).items()}
            latency = {k.decode(): float(v) for k, v in self.state.redis.hgetall(keys.SLACK_LATENCY()).items()}
        except Exception:
            jobs.add_metric([], float("nan"))
            counters = latency = None
        yield jobs
        if latency is not None:  # observed by the workers as each alert is posted (worker/jobs.py record_latencies)
            buckets, running = [], 0.0
            for bound in [*map(str, LATENCY_BUCKETS), "+Inf"]:
                running += latency.get(bound, 0.0)
                buckets.append((bound, running))
            hist = HistogramMetricFamily(
                "event_to_slack_latency_seconds", "Latency in seconds from event ingestion to Slack notification."
            )
            hist.add_metric([], buckets, latency.get("sum", 0.0))
            yield hist
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
        multiprocess.MultiProcessCollector(registry)
    else:
        for collector in (EVENTS_INGESTED, EVENTS_DUPLICATE, HTTP_REQUESTS, WEBHOOKS_REJECTED, RATE_LIMITED):
            registry.register(collector)
    registry.register(BacklogCollector(app_state))
    return generate_latest(registry)
