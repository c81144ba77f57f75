"""Signed webhook sources (Standard Webhooks): register a source, then it posts events signed with its secret."""
from __future__ import annotations

import base64
import binascii
import json
import secrets

from flask import jsonify, request
from marshmallow import ValidationError, fields, validate
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from integrations.secretbox import decrypt, encrypt
from models.webhooks import WebhookSource
from webapp import metrics
from webapp.auth import public, require_member
from webapp.blueprint import Blueprint, strict_json_loads
from webapp.crud import Crud, register_crud
from webapp.errors import ApiError, field_paths
from webapp.resources.ingest import EventInSchema, store, to_incoming
from webapp.schema_base import StrictSchema, UTCDateTime
from webapp.state import db, state

blp = Blueprint("webhooks", __name__, description="Signed inbound webhooks")
SECRET_PURPOSE = "webhook-source-secret"
EVENT_SCHEMA = EventInSchema()


class WebhookSourceSchema(StrictSchema):
    id = fields.String(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    description = fields.String(allow_none=True, validate=validate.Length(max=500))
    created_at = UTCDateTime(dump_only=True)
    secret = fields.String(dump_only=True, metadata={"description": "whsec_...; returned once, when the source is created"})
    url = fields.Method("delivery_url", dump_only=True)

    def delivery_url(self, obj) -> str:
        return f"/webhooks/events/{obj.id}"


class WebhookSourceUpdateSchema(WebhookSourceSchema):
    """PUT renames or redescribes; the secret never changes (create a new source to rotate it)."""


class SourceCrud(Crud):
    model = WebhookSource
    label = "webhook source"

    def create(self, data):
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


def _reject(status: int, reason: str, message: str, details: dict | None = None) -> ApiError:
    metrics.WEBHOOKS_REJECTED.labels(source="standard", reason=reason).inc()
    return ApiError(status, reason, message, details)


@blp.route("/webhooks/events/<source_id>", methods=["POST"])
@public
def receive(source_id: str):
    """Verify the signature over the raw body (5-minute tolerance both ways), then ingest with webhook-id as the key."""
    source = db().execute(select(WebhookSource).where(WebhookSource.id == source_id)).scalar() if len(source_id) <= 36 else None
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
