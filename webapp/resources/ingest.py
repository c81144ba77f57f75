"""POST /ingest (and /events, /ingest/batch): parse, hand the events to the ingest service, answer 202."""

from __future__ import annotations

from flask import jsonify, request

from webapp.audit_trail import unaudited
from webapp.blueprint import Blueprint
from webapp.errors import ApiError
from webapp.services.event_input import BatchInSchema, BatchResultSchema, EventInSchema, IngestedSchema
from webapp.services.ingest import ingest_items, ingest_one

blp = Blueprint("ingest", __name__, description="Event ingestion")


def accepted(payload: dict):
    """A 202 in plain JSON (the schema documents it; dumping through marshmallow adds nothing)."""
    resp = jsonify(payload)
    resp.status_code = 202
    return resp


@blp.route("/ingest", methods=["POST"], aliases=("/events",), need="ingest", browser=True)
@blp.arguments(EventInSchema)
@blp.response(202, IngestedSchema)
@unaudited
def ingest(data):
    return accepted(ingest_one(data, request.headers.get("Idempotency-Key")))


@blp.route("/ingest/batch", methods=["POST"], need="ingest", browser=True)
@blp.arguments(BatchInSchema)
@blp.response(202, BatchResultSchema, description="per-item results: accepted, duplicate or rejected (with the reason)")
@unaudited
def ingest_batch(data):
    """Up to 500 events in one transaction; each item succeeds or fails on its own, in order."""
    results = ingest_items(enumerate(data["events"]))
    counts = {k: sum(r["status"] == k for r in results) for k in ("accepted", "duplicate", "rejected")}
    if counts["rejected"] == len(results):
        raise ApiError(
            400,
            "validation_error",
            "every event in the batch was rejected",
            {f"events.{r['index']}.{field}": msgs for r in results for field, msgs in r["error"]["details"].items()}
            or {"events": ["rejected"]},
        )
    return accepted({**counts, "results": results})
