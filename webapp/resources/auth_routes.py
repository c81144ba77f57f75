"""Member login (JWT), profile, and cookie cleanup."""

from __future__ import annotations

from flask import jsonify, make_response
from marshmallow import fields, validate

from models.tenancy import Member
from webapp.app_state import db
from webapp.auth import ACTIVE_OU_COOKIE, issue_token, principal, public, require_member
from webapp.blueprint import Blueprint
from webapp.rate_limits import request_address
from webapp.schema_base import StrictSchema
from webapp.services.login import sign_in

blp = Blueprint("auth", __name__, description="Authentication")


class LoginSchema(StrictSchema):
    email = fields.Email(required=True)
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class MeSchema(StrictSchema):
    org_member_id = fields.String(attribute="id")
    first_name = fields.String()
    last_name = fields.String()
    email = fields.String()
    role = fields.String()
    verified = fields.Boolean()
    org_id = fields.String()
    active_ou = fields.String(allow_none=True)


@blp.route("/auth/login", methods=["POST"], statuses=(401, 503))
@blp.arguments(LoginSchema)
@public
def login(data):
    """Failed attempts hold the email at the address they came from for a while (429 with Retry-After), and a
    guess spread over many addresses holds it everywhere the member has not signed in from: docs/rate-limits.md."""
    member = sign_in(data["email"], data["password"], request_address())
    return jsonify({"token": issue_token(member), "token_type": "Bearer"})


@blp.route("/auth/cleanup", methods=["POST"], statuses=(204,))
@public
def cleanup():
    resp = make_response("", 204)
    resp.delete_cookie(ACTIVE_OU_COOKIE)
    return resp


@blp.route("/me", statuses=(403,))
@blp.response(200, MeSchema)
def me():
    p = require_member()
    member = db().get(Member, p.member_id)
    out = MeSchema().dump(member)
    out["active_ou"] = principal().unit_id
    return out
