"""Ingest: every entry point (POST /ingest and its lane, batches, imports, webhooks) checks and stores events here."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from marshmallow import ValidationError
from sqlalchemy.exc import IntegrityError

from models.base import utcnow
from models.ingest import IncomingEvent, IngestConflict, public_ids
from models.lead_identity import normalize_alias
from models.lead_metadata import metadata_within
from webapp import metrics
from webapp.app_state import close_db, state
from webapp.auth import current_unit, principal
from webapp.errors import ApiError, field_paths
from webapp.rate_limits import lane_took_quota, limit_unit
from webapp.services.event_input import EventInSchema

ITEM_SCHEMA = EventInSchema()  # one instance: marshmallow schemas are reusable across requests


def to_incoming(
    data: dict, header_key: str | None, max_metadata: int, key_header: str = "Idempotency-Key"
) -> IncomingEvent:
    """Turn a validated body into the model's input; size and key checks that need the whole body."""
    metadata = data.get("metadata") or {}
    if not metadata_within(metadata, max_metadata):
        raise ApiError(
            413, "payload_too_large", f"metadata exceeds {max_metadata // 1024} KB", {"metadata": ["too large"]}
        )
    key = data.get("event_id")
    if key and header_key and key != header_key:
        raise ApiError(
            400,
            "validation_error",
            f"event_id disagrees with the {key_header} header",
            {"event_id": [f"differs from {key_header} header"]},
        )
    if header_key is not None and (not 1 <= len(header_key) <= 200 or not header_key.isprintable()):
        raise ApiError(
            400,
            "validation_error",
            f"{key_header} must be 1-200 printable characters",
            {key_header: ["1-200 printable characters"]},
        )
    aliases = [(a["alias_kind"], a["raw_value"]) for a in data.get("aliases", [])]
    if "alias" in data:
        aliases.append((data["alias_kind"], data["alias"]))
    normalized = list(dict.fromkeys((kind, normalize_alias(kind, raw)) for kind, raw in aliases))
    if any(not value for _, value in normalized):
        raise ApiError(
            400,
            "validation_error",
            "aliases: a raw_value is empty after trimming",
            {"aliases": ["raw_value is empty after trimming"]},
        )
    if any(len(value) > 320 for _, value in normalized):  # lowercasing can lengthen text ('İ' -> 'i̇')
        raise ApiError(
            400,
            "validation_error",
            "aliases: a raw_value is longer than 320 characters once normalized",
            {"aliases": ["longer than 320 characters once normalized"]},
        )
    return IncomingEvent(
        event_type=data["event_type"],
        occurred_at=data.get("timestamp") or utcnow(),
        metadata=metadata,
        lead_id=data.get("lead_id"),
        aliases=normalized,
        idempotency_key=key or header_key,
    )


def parse_event(body, max_metadata: int, key: str | None = None, key_header: str = "Idempotency-Key") -> IncomingEvent:
    """One unparsed event (the lane's body, a batch item, a CSV row, a webhook's), checked exactly as POST /ingest checks its body."""
    if not isinstance(body, dict):
        raise ValidationError({"_schema": ["each event must be a JSON object"]})
    return to_incoming(ITEM_SCHEMA.load(body), key, max_metadata, key_header=key_header)


def rejection(exc: ValidationError | ApiError) -> dict:
    """What a per-item result says of a refused item, with field paths named as POST /ingest names them."""
    if isinstance(exc, ValidationError):
        return {"code": "validation_error", "message": "invalid event", "details": field_paths(exc.messages)}
    return {"code": exc.code, "message": exc.message, "details": exc.details or {"_schema": [exc.message]}}


def commit_events(app_state, org_id: str, unit_id: str, incoming: list[IncomingEvent], quota_taken: bool = False):
    """Commit with concurrent requests (group commit), without a Flask request (the lane calls it); a 503 only for events not written."""
    if not quota_taken:
        limit_unit(app_state, unit_id, len(incoming))
    try:
        results = app_state.committer.submit(org_id, unit_id, incoming)
    except (FutureTimeout, IngestConflict, IntegrityError):  # IntegrityError: its lead was deleted meanwhile
        raise ApiError(
            503,
            "unavailable",
            "the events were not stored; retry (event_ids make retries safe)",
            headers={"Retry-After": "1"},
        )
    duplicates = sum(r.duplicate for r in results)
    if duplicates:  # each inc is a locked write to the multiprocess file: skip a zero one
        metrics.EVENTS_DUPLICATE.inc(duplicates)
    if len(results) > duplicates:
        metrics.EVENTS_INGESTED.inc(len(results) - duplicates)
    return results


def store(incoming: list[IncomingEvent], org_id: str | None = None, unit_id: str | None = None):
    """commit_events from a request, for a source's OU or else the caller's (its refusal comes after the events' own)."""
    if unit_id is None:
        org_id, unit_id = principal().org_id, current_unit()
    close_db()  # release this request's connection (and SQLite's write lock) before the committer needs it
    return commit_events(state(), org_id, unit_id, incoming, quota_taken=lane_took_quota())


def ingested_payload(incoming: IncomingEvent, result) -> dict:
    """The 202 body of one stored event."""
    return {
        "message": "duplicate event ignored" if result.duplicate else "event ingested",
        **public_ids(incoming.idempotency_key, result.event_id),
        "lead_id": result.lead_id,
        "duplicate": result.duplicate,
        "metadata": incoming.metadata,
    }


def ingest_one(data: dict, key: str | None) -> dict:
    """POST /ingest from Flask: a body the schema loaded, stored; its 202 body."""
    incoming = to_incoming(data, key, state().settings.max_metadata_bytes)
    return ingested_payload(incoming, store([incoming])[0])


@dataclass(slots=True)
class Items:
    """Per-item results in order, and the events among them to store with their places in results."""

    results: list[dict]
    incoming: list[IncomingEvent]
    positions: list[int]
    refused: ValidationError | ApiError | None = None  # the last refusal: a lone item answers with its status


Parse = Callable[[object], "IncomingEvent | dict"]


def parse_items(items: Iterable[tuple[int, object]], parse: Parse | None = None) -> Items:
    """The one per-item loop (batches, imports, Segment): each item is an event, its source's own result, or rejected alone."""
    # parse: an item to an event (parse_event by default), or to a result dict for an item that is not an event to store
    # (a Segment identify, an unsupported call); its ValidationError or ApiError rejects that item only.
    if parse is None:
        limit = state().settings.max_metadata_bytes

        def parse(body):
            return parse_event(body, limit)

    out = Items([], [], [])
    for index, item in items:
        try:
            event = parse(item)
        except (ValidationError, ApiError) as exc:
            out.refused = exc
            out.results.append({"index": index, "status": "rejected", "error": rejection(exc)})
            continue
        if isinstance(event, IncomingEvent):
            out.positions.append(len(out.results))
            out.incoming.append(event)
            out.results.append({"index": index, "status": "accepted"})
        else:  # the source's result, kept by reference: the source completes it later (a Segment identify's lead)
            event["index"] = index
            out.results.append(event)
    return out


def store_items(items: Items, org_id: str | None = None, unit_id: str | None = None) -> list[dict]:
    """Store the accepted items in one transaction and complete their results (accepted or duplicate, key and ids)."""
    if items.incoming:
        for i, event, stored in zip(
            items.positions, items.incoming, store(items.incoming, org_id, unit_id), strict=True
        ):
            items.results[i].update(
                status="duplicate" if stored.duplicate else "accepted",
                **public_ids(event.idempotency_key, stored.event_id),
                lead_id=stored.lead_id,
            )
    return items.results


def ingest_items(
    items: Iterable[tuple[int, object]],
    org_id: str | None = None,
    unit_id: str | None = None,
    parse: Parse | None = None,
) -> list[dict]:
    """Up to BATCH_MAX items in one transaction, each accepted, duplicate or rejected on its own; their results in order."""
    return store_items(parse_items(items, parse), org_id, unit_id)
