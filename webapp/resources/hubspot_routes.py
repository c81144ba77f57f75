"""Connecting an OU to HubSpot: the token is checked, the properties prepared, and the token stored encrypted."""

from __future__ import annotations

import logging

from flask import jsonify
from marshmallow import fields, validate
from sqlalchemy import func, select

from integrations.hubspot import HubSpotAdapter, HubSpotAuthError, HubSpotError
from integrations.hubspot_sync import TOKEN_PURPOSE, ensure_options
from integrations.rate_limit import RateLimited
from integrations.secretbox import encrypt
from models.hubspot import HubSpotConnection, HubSpotContact, HubSpotPendingCreation
from models.hubspot_sync_state import reset_sync, sync_counts
from models.integration_defaults import default_serves
from models.lead_identity import primary_email
from models.leads import Lead
from models.level_queries import level_options
from webapp.app_state import close_db, db, state
from webapp.auth import current_unit
from webapp.blueprint import Blueprint
from webapp.crud import page_doc, paginate
from webapp.errors import ApiError
from webapp.schema_base import PageArgs, StrictSchema, UTCDateTime, rfc3339
from worker.jobs import kick_hubspot_sync

blp = Blueprint("hubspot", __name__, description="HubSpot integration")
log = logging.getLogger("leadpulse.hubspot")


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


def status(unit_id: str) -> dict:
    """What the OU sees: never the token, only where it comes from and how syncing goes."""
    conn = db().get(HubSpotConnection, unit_id)
    settings = state().settings
    by_default = conn is None and settings.hubspot_access_token and default_serves(db(), settings, unit_id)
    source = "ou" if conn else ("environment" if by_default else None)
    return {
        "connected": source is not None,
        "token_source": source,
        "portal_id": conn.portal_id if conn else None,
        "properties_ready": bool(conn and conn.properties_ready),
        "create_missing_contacts": bool(conn and conn.create_missing_contacts),
        "connected_at": rfc3339(conn.connected_at) if conn else None,
        "last_sync_at": rfc3339(conn.last_sync_at) if conn else None,
        "last_error": conn.last_error if conn else None,
        "level_options_current": bool(conn and conn.options_synced >= conn.options_wanted),
        **dict(zip(("pending", "failed"), sync_counts(db(), unit_id))),
        "pending_creations": db()
        .execute(
            select(func.count()).select_from(HubSpotPendingCreation).where(HubSpotPendingCreation.unit_id == unit_id)
        )
        .scalar(),
    }


@blp.route("/integrations/hubspot", methods=["GET"])
@blp.alt_response(200, schema=HubSpotStatusSchema, success=True)
def get_status():
    return jsonify(status(current_unit()))


@blp.route("/integrations/hubspot", methods=["PUT"], statuses=(502,))
@blp.arguments(ConnectSchema)
@blp.alt_response(200, schema=HubSpotStatusSchema, success=True)
def connect(data):
    """Nothing is stored unless HubSpot accepts the token and the properties are in place."""
    unit_id = current_unit()
    names, others = level_options(db(), unit_id)
    close_db()  # no transaction held open across HubSpot calls
    adapter = HubSpotAdapter(data["access_token"], state().settings.hubspot_api_base)
    try:
        portal_id = adapter.portal_id()
        ensure_options(state().redis, adapter, data["access_token"], names, others, portal_id)
    except HubSpotAuthError as exc:
        raise ApiError(
            400,
            "invalid_token",
            f"HubSpot rejected the access token: {exc.message}",
            {"access_token": ["rejected by HubSpot"]},
        ) from exc
    except HubSpotError as exc:
        raise ApiError(502, "hubspot_unavailable", f"HubSpot failed ({exc.status}): {exc.message}") from exc
    except RateLimited as exc:  # another OU of this portal is updating the options right now
        raise ApiError(
            503,
            "busy",
            "HubSpot's properties are being updated for another unit; retry shortly",
            headers={"Retry-After": str(int(exc.wait) + 1)},
        ) from exc
    session = db()
    conn = session.get(HubSpotConnection, unit_id) or HubSpotConnection(unit_id=unit_id)
    conn.token_encrypted = encrypt(state().secret_key, TOKEN_PURPOSE, data["access_token"])
    conn.portal_id, conn.properties_ready = portal_id, True
    conn.create_missing_contacts, conn.last_error = data["create_missing_contacts"], None
    conn.options_wanted = conn.options_synced = (conn.options_wanted or 0) + 1  # just pushed by ensure_properties
    session.add(conn)
    session.commit()
    try_kick_sync(unit_id)  # deliver what waited while HubSpot was not configured
    return jsonify(status(unit_id))


def try_kick_sync(unit_id: str) -> None:
    """Enqueue the OU's contact sync; if Redis is down, the sweep does it."""
    try:
        kick_hubspot_sync(state().redis, state().settings.queue_name, unit_id)
    except Exception as exc:
        log.warning("could not enqueue the HubSpot sync (%s); the sweep will", exc.__class__.__name__)


class ResyncSchema(StrictSchema):
    queued = fields.Boolean()
    pending = fields.Integer(metadata={"description": "leads now waiting to be written"})


@blp.route("/integrations/hubspot/sync", methods=["POST"], statuses=(202, 409))
@blp.alt_response(202, schema=ResyncSchema, success=True)
def resync():
    """Write every lead of the OU to HubSpot again (after a restore, or to clear old failures)."""
    unit_id = current_unit()
    if not status(unit_id)["connected"]:
        raise ApiError(409, "not_connected", "connect HubSpot first: PUT /integrations/hubspot")
    session = db()
    reset_sync(session, unit_id)
    session.commit()
    try_kick_sync(unit_id)
    resp = jsonify({"queued": True, "pending": sync_counts(db(), unit_id)[0]})
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
    email = primary_email()
    stmt = (
        select(
            Lead.lead_id,
            email.label("email"),
            HubSpotContact.hubspot_id,
            HubSpotContact.failure,
            HubSpotContact.failed_score,
            HubSpotContact.failed_at,
        )
        .join(Lead, Lead.pk == HubSpotContact.lead_pk)
        .where(HubSpotContact.unit_id == current_unit(), HubSpotContact.failure.isnot(None))
    )

    def dump(rows):
        return [
            {
                "lead_id": r.lead_id,
                "email": r.email,
                "hubspot_id": r.hubspot_id,
                "error": r.failure,
                "score": r.failed_score,
                "failed_at": rfc3339(r.failed_at),
            }
            for r in rows
        ]

    return paginate(stmt, args, dump=dump, key="failures", order_by=(HubSpotContact.failed_at.desc(), Lead.lead_id))


@blp.route("/integrations/hubspot", methods=["DELETE"], statuses=(204, 404))
def disconnect():
    session = db()
    conn = session.get(HubSpotConnection, current_unit())
    if conn is None:
        raise ApiError(404, "not_found", "HubSpot is not connected for this organization unit")
    session.delete(conn)
    session.commit()
    return "", 204
