"""Signed webhook sources (Standard Webhooks, Segment, HubSpot): register a source; its deliveries go to the services."""

from __future__ import annotations

import json

from flask import jsonify, request
from marshmallow import fields, validate

from webapp.app_state import signed_request_url
from webapp.audit_trail import unaudited
from webapp.auth import public
from webapp.blueprint import Blueprint, raw_body, raw_query, strict_json_loads
from webapp.content_encoding import decoded_body
from webapp.crud import register_crud
from webapp.errors import ApiError
from webapp.schema_base import StrictSchema, UTCDateTime
from webapp.services.event_input import IngestedSchema, ItemResultSchema
from webapp.services.hubspot_webhooks import hubspot_source, receive_hubspot
from webapp.services.segment import SEGMENT_CALLS, receive_segment, segment_source
from webapp.services.webhooks import STANDARD_HEADERS, SourceCrud, receive_standard, reject, standard_source

blp = Blueprint("webhooks", __name__, description="Signed inbound webhooks")


class WebhookSourceSchema(StrictSchema):
    id = fields.String(dump_only=True)
    kind = fields.String(
        load_default="standard",
        validate=validate.OneOf(["standard", "segment", "hubspot"]),
        metadata={
            "description": "standard: Standard Webhooks signatures; segment: Segment's HTTP API; "
            "hubspot: HubSpot app webhooks (v3 signatures)"
        },
    )
    client_secret = fields.String(
        load_only=True,
        validate=validate.Length(min=8, max=200),
        metadata={"description": "hubspot sources: the HubSpot app's client secret (write-only)"},
    )
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    description = fields.String(allow_none=True, validate=validate.Length(max=500))
    created_at = UTCDateTime(dump_only=True)
    secret = fields.String(
        dump_only=True, metadata={"description": "whsec_...; returned once, when the source is created"}
    )
    write_key = fields.String(dump_only=True, metadata={"description": "segment sources: the write key, returned once"})
    url = fields.Method("delivery_url", dump_only=True)

    def delivery_url(self, obj) -> str:
        return {"segment": "/webhooks/segment", "hubspot": f"/webhooks/hubspot?source={obj.id}"}.get(
            obj.kind, f"/webhooks/events/{obj.id}"
        )


class WebhookSourceUpdateSchema(WebhookSourceSchema):
    """PUT renames or redescribes; kind and secret never change (create a new source to rotate a secret)."""

    class Meta:
        exclude = ("kind", "client_secret")


register_crud(
    blp,
    SourceCrud(),
    WebhookSourceSchema,
    "/webhooks/sources",
    "/webhooks/sources/<obj_id>",
    update_schema=WebhookSourceUpdateSchema(partial=True),
    statuses={"post": (403,), "put": (403,), "delete": (403,)},
    member_only=("post", "put", "delete"),  # sources hold signing secrets: a person creates them
)


class SegmentResultSchema(ItemResultSchema):
    status = fields.String(
        validate=validate.OneOf(["accepted", "duplicate", "rejected", "identified", "ignored"]),
        metadata={"description": "identified: an identify's traits went to its lead's metadata"},
    )
    reason = fields.String(metadata={"description": "why it was ignored (a call LeadPulse does not take)"})


class SegmentAnswerSchema(StrictSchema):
    success = fields.Boolean()
    results = fields.List(fields.Nested(SegmentResultSchema), metadata={"description": "one per message, in order"})


class HubSpotDeliverySchema(StrictSchema):
    applied = fields.Integer()
    pending = fields.Integer(metadata={"description": "contact creations kept until a token can read them"})
    duplicate = fields.Integer(metadata={"description": "eventIds seen before"})
    ignored = fields.Integer()


@blp.route("/webhooks/events/<source_id>", methods=["POST"], statuses=(202, 400, 401, 413, 503))
@blp.alt_response(202, schema=IngestedSchema, success=True)
@public
@unaudited
@raw_body
def receive(source_id: str):
    """Verify the signature over the raw body (5-minute tolerance both ways), then ingest with webhook-id as the key."""
    source = standard_source(source_id)  # an unknown source is refused before the body is read
    headers = {k: request.headers.get(k, "") for k in STANDARD_HEADERS}
    return receive_standard(source, request.get_data(cache=True), headers), 202


@blp.route("/webhooks/segment", methods=["POST"], defaults={"call": None}, statuses=(400, 401, 413, 415, 503))
@blp.route(
    f"/webhooks/segment/v1/<any({', '.join(SEGMENT_CALLS)}):call>", methods=["POST"], statuses=(400, 401, 413, 415, 503)
)
@blp.alt_response(200, schema=SegmentAnswerSchema, success=True)
@public
@unaudited
@raw_body
def segment(call: str | None):
    """Segment's HTTP API, also at its /v1/<call> paths so its libraries need only host; key as Basic user or writeKey."""
    auth = request.authorization
    basic_key = auth.username if auth is not None and auth.type == "basic" and auth.username else None
    source = segment_source(basic_key) if basic_key else None  # a wrong Basic key is refused before the body is read
    try:
        payload = strict_json_loads(decoded_body())
    except ApiError as exc:
        raise reject(exc.status, exc.code, exc.message, exc.details, source="segment")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise reject(400, "malformed_json", f"body is not valid JSON: {exc}", source="segment")
    return jsonify(receive_segment(payload, call, basic_key, source))


@blp.route("/webhooks/hubspot", methods=["POST"], statuses=(400, 401, 404, 413, 503))
@blp.alt_response(200, schema=HubSpotDeliverySchema, success=True)
@public
@unaudited
@raw_body
@raw_query
def hubspot():
    """HubSpot app webhooks (signature v3, 5-minute window): contact.creation links or creates the lead by email and
    stores the contact id; contact.propertyChange updates lead metadata, never for LeadPulse's own properties."""
    source = hubspot_source(request.args.get("source", ""))  # an unknown source is refused before the body is read
    return jsonify(
        receive_hubspot(
            source,
            request.method,
            signed_request_url(),
            request.get_data(cache=True),
            request.headers.get("X-HubSpot-Request-Timestamp", ""),
            request.headers.get("X-HubSpot-Signature-v3", ""),
        )
    )
