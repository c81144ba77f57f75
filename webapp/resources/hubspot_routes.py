"""Connecting an OU to HubSpot: the token is checked, the properties prepared, and the token stored encrypted."""

from __future__ import annotations

import logging

from flask import jsonify
from marshmallow import fields, validate
from sqlalchemy import select

from integrations.hubspot import HubSpotAdapter, HubSpotAuthError, HubSpotError
from integrations.hubspot_sync import TOKEN_PURPOSE, ensure_options
from integrations.rate_limit import RateLimited
from integrations.secretbox import encrypt
from models.hubspot import HubSpotConnection, HubSpotContact
from models.hubspot_sync_state import reset_sync, sync_counts
from models.lead_identity import primary_email
from models.leads import Lead
from models.level_queries import level_options
from webapp.app_state import close_db, db, state
from webapp.auth import current_unit
from webapp.blueprint import Blueprint
from webapp.crud import paginate
from webapp.errors import ApiError
from webapp.schema_base import PageArgs, StrictSchema, rfc3339
from webapp.services.integration_status import hubspot_status
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


@blp.route("/integrations/hubspot", methods=["GET"])
def get_status():
    return jsonify(hubspot_status(current_unit()))


@blp.route("/integrations/hubspot", methods=["PUT"], statuses=(502,))
@blp.arguments(ConnectSchema)
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
    return jsonify(hubspot_status(unit_id))


def try_kick_sync(unit_id: str) -> None:
    """Enqueue the OU's contact sync; if Redis is down, the sweep does it."""
    try:
        kick_hubspot_sync(state().redis, state().settings.queue_name, unit_id)
    except Exception as exc:
        log.warning("could not enqueue the HubSpot sync (%s); the sweep will", exc.__class__.__name__)


@blp.route("/integrations/hubspot/sync", methods=["POST"], statuses=(202, 409))
def resync():
    """Write every lead of the OU to HubSpot again (after a restore, or to clear old failures)."""
    unit_id = current_unit()
    if not hubspot_status(unit_id)["connected"]:
        raise ApiError(409, "not_connected", "connect HubSpot first: PUT /integrations/hubspot")
    session = db()
    reset_sync(session, unit_id)
    session.commit()
    try_kick_sync(unit_id)
    resp = jsonify({"queued": True, "pending": sync_counts(db(), unit_id)[0]})
    resp.status_code = 202
    return resp


@blp.route("/integrations/hubspot/failures", methods=["GET"])
@blp.arguments(PageArgs, location="query")
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
