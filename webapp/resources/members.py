"""Members of the active OU (/org-members) and roles in an OU (/org-units/{id}/memberships): Owners manage both."""

from __future__ import annotations

from marshmallow import fields, validate

from models.accounts import PASSWORD_MAX, ROLES, AccountError, EmailTaken
from models.members import (
    LastOwner,
    NotFound,
    add_to_unit,
    assign,
    delete_member,
    remove_from_unit,
    set_role,
    unit_member,
    unit_members,
    units_not_owned_by,
    update_member,
)
from webapp.app_state import db
from webapp.auth import current_unit, principal
from webapp.blueprint import Blueprint
from webapp.errors import ApiError, bad_request, not_found
from webapp.schema_base import StrictSchema

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


def _dump(member, role: str) -> dict:
    return {
        "org_member_id": member.id,
        "first_name": member.first_name,
        "last_name": member.last_name,
        "email": member.email,
        "role": role,
    }


def _answer(change):
    """Run a membership change and commit it; the rules' refusals become the API's errors."""
    session = db()
    try:
        out = change(session)
        session.commit()
    except NotFound:
        session.rollback()
        raise not_found("member") from None
    except (LastOwner, EmailTaken) as exc:
        session.rollback()
        raise ApiError(409, "conflict", str(exc)) from None
    except AccountError as exc:
        session.rollback()
        raise bad_request(str(exc)) from None
    return out


def _owns_all_units_of(session, member_id: str) -> bool:
    return units_not_owned_by(session, member_id, principal().member_id) == 0


@blp.route("/org-members", methods=["GET"], need="own")
@blp.response(200, MemberSchema(many=True))
def list_members():
    return [_dump(m, role) for m, role in unit_members(db(), current_unit())]


@blp.route("/org-members", methods=["POST"], need="own", statuses=(409,))
@blp.arguments(MemberInSchema)
@blp.response(201, MemberSchema)
def create_member(data):
    p = principal()
    return _answer(lambda s: _dump(*add_to_unit(s, p.org_id, data, current_unit())))


@blp.route("/org-members/<member_id>", methods=["PUT"], need="own", statuses=(409,))
@blp.arguments(MemberUpdateSchema)
@blp.response(200, MemberSchema)
def update(data, member_id):
    unit = current_unit()
    return _answer(lambda s: _dump(*update_member(s, unit, member_id, data, _owns_all_units_of(s, member_id))))


@blp.route("/org-members/<member_id>", methods=["DELETE"], need="own", statuses=(204, 409))
@blp.response(204)
def delete(member_id):
    unit = current_unit()
    if member_id == principal().member_id:
        raise bad_request("you cannot delete your own login: another Owner can")
    _answer(lambda s: delete_member(s, unit, member_id, _owns_all_units_of(s, member_id)))


@blp.route("/org-units/<unit_id>/memberships", methods=["GET"], need="own")  # emails and roles, as /org-members
@blp.response(200, MemberSchema(many=True))
def list_memberships(unit_id):
    return [_dump(m, role) for m, role in unit_members(db(), unit_id)]


@blp.route("/org-units/<unit_id>/memberships", methods=["POST"], need="own", statuses=(409,))
@blp.arguments(MembershipInSchema)
@blp.response(200, MemberSchema)
def add_membership(data, unit_id):
    org = principal().org_id

    def change(session):
        assign(session, org, unit_id, data["org_member_id"], data["role"])
        return _dump(*_member_and_role(session, unit_id, data["org_member_id"]))

    return _answer(change)


@blp.route("/org-units/<unit_id>/memberships/<member_id>", methods=["PUT"], need="own", statuses=(409,))
@blp.arguments(RoleSchema)
@blp.response(200, MemberSchema)
def change_role(data, unit_id, member_id):
    def change(session):
        set_role(session, unit_id, member_id, data["role"])
        return _dump(*_member_and_role(session, unit_id, member_id))

    return _answer(change)


@blp.route("/org-units/<unit_id>/memberships/<member_id>", methods=["DELETE"], need="own", statuses=(204, 409))
@blp.response(204)
def remove_membership(unit_id, member_id):
    _answer(lambda s: remove_from_unit(s, unit_id, member_id))


def _member_and_role(session, unit_id: str, member_id: str):
    member, membership = unit_member(session, unit_id, member_id)
    return member, membership.role
