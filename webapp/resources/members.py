"""Members of the active OU (/org-members) and roles in an OU (/org-units/{id}/memberships): Owners manage both."""

from __future__ import annotations

from marshmallow import fields, validate

from models.accounts import PASSWORD_MAX, ROLES
from webapp.auth import current_unit, principal
from webapp.blueprint import Blueprint
from webapp.schema_base import StrictSchema
from webapp.services import members

blp = Blueprint("members", __name__, description="Members and their roles")

NAME = validate.Length(max=100)
ROLE = validate.OneOf(ROLES)


class MemberInSchema(StrictSchema):
    first_name = fields.String(required=True, validate=NAME)
    last_name = fields.String(load_default="", validate=NAME)
    email = fields.Email(required=True, validate=validate.Length(max=320))
    password = fields.String(required=True, validate=validate.Length(min=1, max=PASSWORD_MAX))
    role = fields.String(load_default="Viewer", validate=ROLE)


class MemberUpdateSchema(StrictSchema):
    first_name = fields.String(validate=NAME)
    last_name = fields.String(validate=NAME)
    email = fields.Email(validate=validate.Length(max=320))
    role = fields.String(validate=ROLE)


class MembershipInSchema(StrictSchema):
    org_member_id = fields.String(required=True, validate=validate.Length(min=1, max=36))
    role = fields.String(load_default="Viewer", validate=ROLE)


class RoleSchema(StrictSchema):
    role = fields.String(required=True, validate=ROLE)


class MemberSchema(StrictSchema):
    org_member_id = fields.String()
    first_name = fields.String()
    last_name = fields.String()
    email = fields.String()
    role = fields.String(metadata={"description": "role in the organization unit"})


@blp.route("/org-members", methods=["GET"], need="own")
@blp.response(200, MemberSchema(many=True))
def list_members():
    return members.listing(current_unit())


@blp.route("/org-members", methods=["POST"], need="own", statuses=(409,))
@blp.arguments(MemberInSchema)
@blp.response(201, MemberSchema)
def create_member(data):
    return members.create(principal().org_id, current_unit(), data)


@blp.route("/org-members/<member_id>", methods=["PUT"], need="own", statuses=(409,))
@blp.arguments(MemberUpdateSchema)
@blp.response(200, MemberSchema)
def update(data, member_id):
    return members.update(current_unit(), member_id, data, principal().member_id)


@blp.route("/org-members/<member_id>", methods=["DELETE"], need="own", statuses=(204, 409))
@blp.response(204)
def delete(member_id):
    members.delete(current_unit(), member_id, principal().member_id)


@blp.route("/org-units/<unit_id>/memberships", methods=["GET"], need="own")  # emails and roles, as /org-members
@blp.response(200, MemberSchema(many=True))
def list_memberships(unit_id):
    return members.listing(unit_id)


@blp.route("/org-units/<unit_id>/memberships", methods=["POST"], need="own", statuses=(409,))
@blp.arguments(MembershipInSchema)
@blp.response(200, MemberSchema)
def add_membership(data, unit_id):
    return members.add_membership(principal().org_id, unit_id, data["org_member_id"], data["role"])


@blp.route("/org-units/<unit_id>/memberships/<member_id>", methods=["PUT"], need="own", statuses=(409,))
@blp.arguments(RoleSchema)
@blp.response(200, MemberSchema)
def change_role(data, unit_id, member_id):
    return members.change_role(unit_id, member_id, data["role"])


@blp.route("/org-units/<unit_id>/memberships/<member_id>", methods=["DELETE"], need="own", statuses=(204, 409))
@blp.response(204)
def remove_membership(unit_id, member_id):
    members.remove_membership(unit_id, member_id)
