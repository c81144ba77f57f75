"""Signed webhook sources (Standard Webhooks): register a source, then it posts events signed with its secret."""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets

from flask import jsonify, request
from marshmallow import ValidationError, fields, validate
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from integrations.secretbox import decrypt, encrypt
from integrations import segment as segment_map
from models.base import utcnow
from models.ingest import resolve_lead
from models.leads import Lead
from models.webhooks import WebhookSource
from webapp import metrics
from webapp.auth import plausible_id, public, require_member
from webapp.blueprint import Blueprint, strict_json_loads
from webapp.crud import Crud, register_crud
from webapp.errors import ApiError, field_paths
from webapp.resources.ingest import BATCH_MAX, EventInSchema, rejected, store, to_incoming
from webapp.schema_base import StrictSchema, UTCDateTime
from webapp.state import close_db, db, state

blp = Blueprint("webhooks", __name__, description="Signed inbound webhooks")
SECRET_PURPOSE = "webhook-source-secret"
EVENT_SCHEMA = EventInSchema()


class WebhookSourceSchema(StrictSchema):
    id = fields.String(dump_only=True)
    kind = fields.String(load_default="standard", validate=validate.OneOf(["standard", "segment"]),
                         metadata={"description": "standard: Standard Webhooks signatures; segment: Segment's HTTP API"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    description = fields.String(allow_none=True, validate=validate.Length(max=500))
    created_at = UTCDateTime(dump_only=True)
    secret = fields.String(dump_only=True, metadata={"description": "whsec_...; returned once, when the source is created"})
    write_key = fields.String(dump_only=True, metadata={"description": "segment sources: the write key, returned once"})
    url = fields.Method("delivery_url", dump_only=True)

    def delivery_url(self, obj) -> str:
        return "/webhooks/segment" if obj.kind == "segment" else f"/webhooks/events/{obj.id}"


class WebhookSourceUpdateSchema(WebhookSourceSchema):
    """PUT renames or redescribes; kind and secret never change (create a new source to rotate a secret)."""

    class Meta:
        exclude = ("kind",)


class SourceCrud(Crud):
    model = WebhookSource
    label = "webhook source"

    def create(self, data):
        if data["kind"] == "segment":  # compared, never used to sign: a hash is enough (and looked up by it)
            write_key = "wk_" + secrets.token_urlsafe(24)
            source = super().create({**data, "write_key_hash": hash_write_key(write_key)})
            source.write_key = write_key  # transient: exists only in this response
            return source
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        data["secret_encrypted"] = encrypt(state().secret_key, SECRET_PURPOSE, secret)
        source = super().create(data)
        source.secret = secret  # transient: exists only in this response, never stored in the clear
        return source

    def validate(self, session, obj, creating):
        require_member()
        self.refuse_duplicate(session, obj, "name", WebhookSource.unit_id == obj.unit_id, WebhookSource.name == obj.name)

    def delete(self, obj_id):
        require_member()
        super().delete(obj_id)


register_crud(blp, SourceCrud(), WebhookSourceSchema, "/webhooks/sources", "/webhooks/sources/<obj_id>",
              update_schema=WebhookSourceUpdateSchema(partial=True))


def hash_write_key(write_key: str) -> str:
    return hashlib.sha256(write_key.encode()).hexdigest()


def _reject(status: int, reason: str, message: str, details: dict | None = None, source: str = "standard") -> ApiError:
    metrics.WEBHOOKS_REJECTED.labels(source=source, reason=reason).inc()
    return ApiError(status, reason, message, details)


@blp.route("/webhooks/events/<source_id>", methods=["POST"])
@public
def receive(source_id: str):
    """Verify the signature over the raw body (5-minute tolerance both ways), then ingest with webhook-id as the key."""
    source = db().execute(select(WebhookSource).where(WebhookSource.id == source_id, WebhookSource.kind == "standard")).scalar() \
        if plausible_id(source_id, 36) else None
    if source is None:
        raise _reject(404, "unknown_source", "no webhook source has this id")
    secret = decrypt(state().secret_key, SECRET_PURPOSE, source.secret_encrypted)
    body = request.get_data(cache=True)
    headers = {k: request.headers.get(k, "") for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    missing = [k for k, v in headers.items() if not v]
    if missing:
        raise _reject(400, "missing_signature_headers", f"missing {', '.join(missing)}", {k: ["required"] for k in missing})
    if secret is None:  # SECRET_KEY changed since the source was created
        raise _reject(401, "bad_signature", "this source's secret can no longer be read; create the source again")
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except WebhookVerificationError as exc:
        reason = "stale_timestamp" if "timestamp too" in str(exc) else "bad_signature"
        raise _reject(401, reason, f"signature refused: {exc}", {"webhook-timestamp" if reason == "stale_timestamp" else "webhook-signature": [str(exc)]})
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:  # malformed header or body the library trips on
        raise _reject(401, "bad_signature", "signature refused: malformed signature header or body",
                      {"webhook-signature": [exc.__class__.__name__]})
    if len(headers["webhook-id"]) > 200:
        raise _reject(400, "validation_error", "webhook-id is longer than 200 characters", {"webhook-id": ["too long"]})
    try:
        payload = strict_json_loads(body)
        if not isinstance(payload, dict):
            raise ValidationError({"_schema": ["the body must be one event, a JSON object"]})
        data = EVENT_SCHEMA.load(payload)
    except json.JSONDecodeError as exc:
        raise _reject(400, "malformed_json", f"body is not valid JSON: {exc.msg}")
    except ValidationError as exc:
        raise _reject(400, "validation_error", "invalid event", field_paths(exc.messages))
    incoming = to_incoming(data, headers["webhook-id"], state().settings.max_metadata_bytes, key_header="webhook-id")
    [result] = store([incoming], source.org_id, source.unit_id)
    resp = jsonify({"message": "duplicate event ignored" if result.duplicate else "event ingested", "event_id": str(result.event_id),
                    "lead_id": result.lead_id, "duplicate": result.duplicate})
    resp.status_code = 202
    return resp


@blp.route("/webhooks/segment", methods=["POST"])
@public
def segment():
    """Segment's HTTP API (track, page, identify, batch), the write key as the Basic user; messageId dedupes."""
    auth = request.authorization
    write_key = auth.username if auth is not None and auth.type == "basic" else None
    if not write_key:
        raise _reject(401, "missing_write_key", "send the source's write key as the Basic auth user", source="segment")
    source = db().execute(select(WebhookSource).where(WebhookSource.kind == "segment",
                                                      WebhookSource.write_key_hash == hash_write_key(write_key))).scalar()
    if source is None:
        raise _reject(401, "unknown_source", "no Segment source has this write key", source="segment")
    try:
        payload = strict_json_loads(request.get_data(cache=True))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _reject(400, "malformed_json", f"body is not valid JSON: {exc}", source="segment")
    if not isinstance(payload, dict):
        raise _reject(400, "validation_error", "the body must be a JSON object", source="segment")
    messages = payload.get("batch") if "batch" in payload else [payload]
    if not isinstance(messages, list) or not 1 <= len(messages) <= BATCH_MAX:
        raise _reject(400, "validation_error", f"batch must hold 1 to {BATCH_MAX} messages", {"batch": ["1 to 500 messages"]},
                      source="segment")
    results, incoming, positions = [], [], []
    for i, msg in enumerate(messages):
        try:
            if not isinstance(msg, dict):
                raise ValidationError({"_schema": ["each message must be a JSON object"]})
            if msg.get("type") == "identify":
                lead_id = identify(source, msg)
                results.append({"index": i, "status": "identified", "lead_id": lead_id})
                continue
            body = segment_map.event_body(msg)
            incoming.append(to_incoming(EVENT_SCHEMA.load(body), None, state().settings.max_metadata_bytes))
            positions.append(i)
            results.append({"index": i, "status": "accepted"})
        except segment_map.Unsupported as exc:
            results.append({"index": i, "status": "ignored", "reason": str(exc)})
        except ValidationError as exc:
            metrics.WEBHOOKS_REJECTED.labels(source="segment", reason="validation_error").inc()
            results.append(rejected(i, "validation_error", "invalid message", field_paths(exc.messages)))
        except ApiError as exc:
            metrics.WEBHOOKS_REJECTED.labels(source="segment", reason=exc.code).inc()
            results.append(rejected(i, exc.code, exc.message, exc.details))
    if incoming:
        for i, stored in zip(positions, store(incoming, source.org_id, source.unit_id)):
            results[i].update(status="duplicate" if stored.duplicate else "accepted", event_id=str(stored.event_id),
                              lead_id=stored.lead_id)
    if len(messages) == 1 and results[0]["status"] == "rejected":
        error = results[0]["error"]
        raise ApiError(400, error["code"], error["message"], error["details"])
    return jsonify({"success": True, "results": results})


def identify(source: WebhookSource, msg: dict) -> str:
    """traits become lead metadata (null removes a key); userId, anonymousId and the email identify the lead."""
    body = {"aliases": segment_map.aliases(msg), "event_type": "identify"}
    if msg.get("userId") is None and msg.get("anonymousId") is None and not body["aliases"]:
        raise ValidationError({"userId": ["userId, anonymousId or traits.email is required"]})
    data = to_incoming(EVENT_SCHEMA.load(body), None, state().settings.max_metadata_bytes)
    traits = segment_map.traits_of(msg)
    if len(json.dumps(traits, default=str)) > state().settings.max_metadata_bytes:
        raise ApiError(413, "payload_too_large", "traits are too large", {"traits": ["too large"]})
    close_db()
    with state().WriterSession() as s, s.begin():
        pk, lead_id = resolve_lead(s, source.org_id, source.unit_id, None, data.aliases)
        lead = s.get(Lead, pk, with_for_update=True)
        meta = dict(lead.metadata_ or {})
        for key, value in traits.items():
            if value is None:
                meta.pop(key, None)
            else:
                meta[key] = value
        lead.metadata_, lead.updated_at = meta, utcnow()
    return lead_id
