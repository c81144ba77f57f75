"""Connecting an OU to HubSpot: the token is checked, the properties prepared, and the token stored encrypted."""

from __future__ import annotations

from flask import jsonify
from marshmallow import fields, validate

from webapp.auth import current_unit
from webapp.blueprint import Blueprint
from webapp.crud import page_doc, paginate
from webapp.schema_base import PageArgs, StrictSchema, UTCDateTime, rfc3339
from webapp.services.hubspot_connect import (
    FAILURES_ORDER,
    connect_hubspot,
    disconnect_hubspot,
    failure_items,
    failures_statement,
    resync_hubspot,
)
from webapp.services.integration_status import hubspot_status

blp = Blueprint("hubspot", __name__, description="HubSpot integration")


class ConnectSchema(StrictSchema):
    access_token = fields.String(
        required=True,
        load_only=True,
        validate=[  # it goes in an HTTP header, which carries only visible ASCII: anything else could never be a token
            validate.Length(min=10, max=500),
            validate.Regexp(r"^[\x21-\x7e]+$", error="must be printable ASCII without spaces, as HubSpot's tokens are"),
        ],
    )
    create_missing_contacts = fields.Boolean(load_default=False)


class HubSpotStatusSchema(StrictSchema):
    connected = fields.Boolean()
    token_source = fields.String(
        allow_none=True,
        validate=validate.OneOf(["ou", "environment"]),
        metadata={"description": "ou: its own token; environment: the operator's default; null: none"},
    )
    portal_id = fields.Integer(allow_none=True)
    properties_ready = fields.Boolean()
    create_missing_contacts = fields.Boolean()
    connected_at = UTCDateTime(allow_none=True)
    last_sync_at = UTCDateTime(allow_none=True)
    last_error = fields.String(allow_none=True)
    level_options_current = fields.Boolean(metadata={"description": "HubSpot's level options match the levels"})
    pending = fields.Integer(metadata={"description": "leads waiting to be written to HubSpot"})
    failed = fields.Integer(metadata={"description": "contacts HubSpot refused (GET /integrations/hubspot/failures)"})
    pending_creations = fields.Integer(metadata={"description": "new HubSpot contacts waiting for a token to read"})


@blp.route("/integrations/hubspot", methods=["GET"])
@blp.alt_response(200, schema=HubSpotStatusSchema, success=True)
def get_status():
    return jsonify(hubspot_status(current_unit()))


@blp.route("/integrations/hubspot", methods=["PUT"], statuses=(502,))
@blp.arguments(ConnectSchema)
@blp.alt_response(200, schema=HubSpotStatusSchema, success=True)
def connect(data):
    """Nothing is stored unless HubSpot accepts the token and the properties are in place."""
    unit_id = current_unit()
    connect_hubspot(unit_id, data["access_token"], data["create_missing_contacts"])
    return jsonify(hubspot_status(unit_id))


class ResyncSchema(StrictSchema):
    queued = fields.Boolean()
    pending = fields.Integer(metadata={"description": "leads now waiting to be written"})


@blp.route("/integrations/hubspot/sync", methods=["POST"], statuses=(202, 409))
@blp.alt_response(202, schema=ResyncSchema, success=True)
def resync():
    """Write every lead of the OU to HubSpot again (after a restore, or to clear old failures)."""
    resp = jsonify({"queued": True, "pending": resync_hubspot(current_unit())})
    resp.status_code = 202
    return resp


class HubSpotFailureSchema(StrictSchema):
    lead_id = fields.String()
    email = fields.String(allow_none=True)
    hubspot_id = fields.String(allow_none=True)
    error = fields.String(metadata={"description": "HubSpot's message"})
    score = fields.Integer(allow_none=True, metadata={"description": "the score that failed to sync"})
    failed_at = UTCDateTime(allow_none=True)


FAILURES = page_doc(HubSpotFailureSchema, "failures")  # newest first


@blp.route("/integrations/hubspot/failures", methods=["GET"])
@blp.arguments(PageArgs, location="query")
@blp.alt_response(200, schema=FAILURES, success=True)
def failures(args):
    """Contacts HubSpot refused or could not find, with HubSpot's message; a later change retries them."""

    def dump(rows):
        return [{**f, "failed_at": rfc3339(f["failed_at"])} for f in failure_items(rows)]

    return paginate(failures_statement(current_unit()), args, dump=dump, key="failures", order_by=FAILURES_ORDER)


@blp.route("/integrations/hubspot", methods=["DELETE"], statuses=(204, 404))
def disconnect():
    disconnect_hubspot(current_unit())
    return "", 204
