"""A Segment delivery: its source by write key, its messages as events, identify traits merged into lead metadata."""

from __future__ import annotations

import hmac

from marshmallow import ValidationError
from sqlalchemy import select

from integrations import segment as segment_map
from models.base import utcnow
from models.ingest import IncomingEvent, resolve_leads
from models.lead_metadata import merged_metadata
from models.leads import Lead
from models.webhooks import WebhookSource
from webapp import metrics
from webapp.app_state import close_db, db, state
from webapp.errors import ApiError
from webapp.rate_limits import limit_source
from webapp.schema_base import bad_text
from webapp.services.event_input import BATCH_MAX
from webapp.services.ingest import parse_event, parse_items, rejection, store_items
from webapp.services.leads import set_metadata
from webapp.services.webhooks import hash_write_key, reject

SEGMENT_CALLS = ("batch", "track", "identify", "page")


def segment_source(write_key: str) -> WebhookSource:
    """The Segment source of a write key, found by its hash (no stored key to compare), else a 401."""
    source = (
        db()
        .execute(
            select(WebhookSource).where(
                WebhookSource.kind == "segment", WebhookSource.write_key_hash == hash_write_key(write_key)
            )
        )
        .scalar()
    )
    if source is None:
        raise reject(401, "unknown_source", "no Segment source has this write key", source="segment")
    return source


def receive_segment(payload, call: str | None, basic_key: str | None, source: WebhookSource | None) -> dict:
    """Each message stored, identified, ignored or rejected on its own; a lone message answers as POST /ingest would."""
    if not isinstance(payload, dict):
        raise reject(400, "validation_error", "the body must be a JSON object", source="segment")
    source = source_of_body_key(payload.get("writeKey"), basic_key, source)
    limit_source(state(), source.id)  # the write key is all a Segment source has: whoever holds it counts against it
    messages = segment_messages(payload, call)
    limit = state().settings.max_metadata_bytes
    identities: list[tuple[dict, list, dict]] = []

    def parse(msg):
        if not isinstance(msg, dict):
            raise ValidationError({"_schema": ["each message must be a JSON object"]})
        if msg.get("type") == "identify":
            result = {"status": "identified"}
            identities.append((result, *identity(msg, limit)))
            return result
        try:
            body = segment_map.event_body(msg)
        except segment_map.Unsupported as exc:
            return {"status": "ignored", "reason": str(exc)}
        return parse_event(body, limit)

    items = parse_items(enumerate(messages), parse)
    for result in items.results:
        if result["status"] == "rejected":
            metrics.WEBHOOKS_REJECTED.labels(source="segment", reason=result["error"]["code"]).inc()
    refused = (apply_identities(source, identities) if identities else None) or items.refused
    results = store_items(items, source.org_id, source.unit_id)
    if len(messages) == 1 and results[0]["status"] == "rejected":
        error = results[0]["error"]
        raise ApiError(getattr(refused, "status", 400), error["code"], error["message"], error["details"])
    return {"success": True, "results": results}


def source_of_body_key(body_key, basic_key: str | None, source: WebhookSource | None) -> WebhookSource:
    """writeKey in the body, as Segment's API takes it: alone it names the source; beside a Basic user it must be the same key."""
    if body_key is None or body_key == "":
        if source is None:
            raise reject(
                401,
                "missing_write_key",
                "send the source's write key as the Basic auth user or as writeKey in the body",
                source="segment",
            )
        return source
    if not isinstance(body_key, str):
        raise reject(
            400, "validation_error", "writeKey must be a string", {"writeKey": ["must be a string"]}, source="segment"
        )
    if not body_key.isascii():  # write keys are ASCII: this one is wrong (and a lone surrogate could not be hashed)
        raise reject(
            401, "unknown_source", "no Segment source has this write key", {"writeKey": ["unknown"]}, source="segment"
        )
    if basic_key is None:
        return segment_source(body_key)
    if not hmac.compare_digest(body_key.encode(), basic_key.encode()):
        raise reject(
            401,
            "unknown_source",
            "the writeKey in the body is not the Basic user's write key",
            {"writeKey": ["does not match"]},
            source="segment",
        )
    return source


def segment_messages(payload: dict, call: str | None) -> list:
    """The messages of a body: a batch, or one message whose type a single-call path (/v1/track) implies."""
    if call == "batch" or (call is None and "batch" in payload):
        messages = payload.get("batch")
    elif call is None:
        messages = [payload]
    elif payload.get("type", call) != call:
        raise reject(
            400,
            "validation_error",
            f"a /v1/{call} body is a {call} message",
            {"type": [f"must be {call} or absent"]},
            source="segment",
        )
    else:
        messages = [{**payload, "type": call}]
    if not isinstance(messages, list) or not 1 <= len(messages) <= BATCH_MAX:
        raise reject(
            400,
            "validation_error",
            f"batch must hold 1 to {BATCH_MAX} messages",
            {"batch": ["1 to 500 messages"]},
            source="segment",
        )
    return messages


def identity(msg: dict, max_metadata: int) -> tuple[list, dict]:
    """An identify message's aliases (userId, anonymousId, traits.email) and traits, checked before anything is stored."""
    body = {"aliases": segment_map.aliases(msg), "event_type": "identify"}
    if msg.get("userId") is None and msg.get("anonymousId") is None and not body["aliases"]:
        raise ValidationError({"userId": ["userId, anonymousId or traits.email is required"]})
    data = parse_event(body, max_metadata)
    traits = segment_map.traits_of(msg)
    problems = bad_text(traits)  # NUL and lone surrogates: PostgreSQL cannot store them
    if problems:
        raise ValidationError({f"traits.{path}": [problem] for path, problem in problems.items()})
    return data.aliases, traits


def apply_identities(source: WebhookSource, identities: list[tuple[dict, list, dict]]) -> ApiError | None:
    """traits become lead metadata (null removes a key), all messages in one transaction, in order, as if one at a time;
    a message that would grow its lead past the metadata limit is rejected alone. Returns the last such refusal."""
    close_db()
    refused = None
    with state().WriterSession() as s, s.begin():
        leads = resolve_leads(
            s,
            source.org_id,
            source.unit_id,
            [
                IncomingEvent(event_type="identify", occurred_at=utcnow(), aliases=aliases)
                for _, aliases, _ in identities
            ],
        )
        rows = {
            lead.pk: lead
            for lead in s.execute(  # locked in one order: concurrent batches never deadlock
                select(Lead).where(Lead.pk.in_({pk for pk, _ in leads})).order_by(Lead.pk).with_for_update()
            ).scalars()
        }
        for (result, _, traits), (pk, lead_id) in zip(identities, leads, strict=True):
            try:
                set_metadata(rows[pk], merged_metadata(rows[pk].metadata_, traits), "traits")
                result["lead_id"] = lead_id
            except ApiError as exc:
                refused, error = exc, rejection(exc)
                metrics.WEBHOOKS_REJECTED.labels(source="segment", reason=error["code"]).inc()
                result.update(status="rejected", error=error)
    return refused
