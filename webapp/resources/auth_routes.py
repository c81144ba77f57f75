"""Member login (a JWT naming a session), logout, profile, and cookie cleanup."""

from __future__ import annotations

from flask import jsonify, make_response
from marshmallow import fields, validate

from models.tenancy import Member
from webapp.app_state import db
from webapp.auth import ACTIVE_OU_COOKIE, principal, public
from webapp.blueprint import Blueprint
from webapp.cookies import delete_cookie
from webapp.rate_limits import request_address
from webapp.schema_base import StrictSchema, UTCDateTime
from webapp.services.login import log_in, log_out

blp = Blueprint("auth", __name__, description="Authentication")


class LoginSchema(StrictSchema):
    email = fields.Email(required=True)
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class TokenSchema(StrictSchema):
    token = fields.String(metadata={"description": "a JWT naming this login's session"})
    token_type = fields.String(validate=validate.OneOf(["Bearer"]))
    expires_at = UTCDateTime()


class MeSchema(StrictSchema):
    org_member_id = fields.String(attribute="id")
    first_name = fields.String()
    last_name = fields.String()
    email = fields.String()
    role = fields.String(
        attribute="unit_role", allow_none=True, metadata={"description": "role in the active organization unit"}
    )
    verified = fields.Boolean()
    org_id = fields.String()
    active_ou = fields.String(allow_none=True)


@blp.route("/auth/login", methods=["POST"], statuses=(401, 503))
@blp.arguments(LoginSchema)
@blp.alt_response(200, schema=TokenSchema, success=True)
@public
def login(data):
    """Failed attempts hold the email at the address they came from for a while (429 with Retry-After), and a
    guess spread over many addresses holds it everywhere the member has not signed in from: docs/rate-limits.md."""
    _, token, expires_at = log_in(data["email"], data["password"], request_address())
    return jsonify(
        {"token": token, "token_type": "Bearer", "expires_at": expires_at.isoformat().replace("+00:00", "Z")}
    )


@blp.route("/auth/logout", methods=["POST"], need="member", statuses=(204,))
def logout():
    """Ends this login: its token stops working at once, on every web process."""
    log_out(principal().session_id)
    resp = make_response("", 204)
    resp.delete_cookie(ACTIVE_OU_COOKIE)
    return resp


@blp.route("/auth/cleanup", methods=["POST"], statuses=(204,))
@public
def cleanup():
    resp = make_response("", 204)
    delete_cookie(resp, ACTIVE_OU_COOKIE)
    return resp


@blp.route("/me", need="member")
@blp.response(200, MeSchema)
def me():
    p = principal()
    member = db().get(Member, p.member_id)
    fields_ = ("id", "first_name", "last_name", "email", "verified", "org_id")
    return {**{f: getattr(member, f) for f in fields_}, "active_ou": p.unit_id, "unit_role": p.role}
