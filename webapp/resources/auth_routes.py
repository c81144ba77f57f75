"""Member login (JWT), profile, and cookie cleanup."""

from __future__ import annotations

from flask import jsonify, make_response
from marshmallow import fields, validate
from sqlalchemy import select

from models.accounts import password_matches
from models.tenancy import Member
from webapp.app_state import db
from webapp.auth import ACTIVE_OU_COOKIE, issue_token, principal, public, require_member, unauthorized
from webapp.blueprint import Blueprint
from webapp.cookies import delete_cookie
from webapp.offload import off_loop
from webapp.schema_base import StrictSchema

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
    member = db().execute(select(Member).where(Member.email == data["email"].strip().lower())).scalar()
    # argon2 takes ~0.1 s of CPU in C: under gevent it runs in a native thread so the worker's other requests go on.
    if not off_loop(password_matches, data["password"], member.password_hash if member else None):
        raise unauthorized("invalid email or password")
    return jsonify({"token": issue_token(member), "token_type": "Bearer"})


@blp.route("/auth/cleanup", methods=["POST"], statuses=(204,))
@public
def cleanup():
    resp = make_response("", 204)
    delete_cookie(resp, ACTIVE_OU_COOKIE)
    return resp


@blp.route("/me", statuses=(403,))
@blp.response(200, MeSchema)
def me():
    p = require_member()
    member = db().get(Member, p.member_id)
    out = MeSchema().dump(member)
    out["active_ou"] = principal().unit_id
    return out
