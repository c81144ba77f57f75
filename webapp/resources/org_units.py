"""Organization units: list, create, rename, and pick the active one (activeOu cookie)."""

from __future__ import annotations

from flask import jsonify
from marshmallow import fields, validate

from models.accounts import create_unit, unique_slug
from models.members import member_units
from models.tenancy import Membership, Organization, OrgUnit
from webapp.app_state import db
from webapp.auth import is_member_of, principal, select_unit
from webapp.blueprint import Blueprint
from webapp.errors import not_found
from webapp.schema_base import StrictSchema, UTCDateTime

blp = Blueprint("org_units", __name__, description="Organization units")


class UnitInSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))


class UnitSchema(StrictSchema):
    unit_id = fields.String(attribute="id")
    name = fields.String()
    slug = fields.String()
    created_at = UTCDateTime()


class OrganizationSchema(StrictSchema):
    org_id = fields.String()
    name = fields.String()


class UnitListSchema(StrictSchema):
    units = fields.List(fields.Nested(UnitSchema), metadata={"description": "the caller's, oldest first"})
    organization = fields.Nested(OrganizationSchema)


class ActiveSchema(StrictSchema):
    ouId = fields.String(required=True, validate=validate.Length(min=1, max=36))


class ActiveUnitSchema(StrictSchema):
    active_ou = fields.String()
    name = fields.String()


def _member_unit(member_id: str, unit_id: str) -> OrgUnit:
    """An OU the member belongs to; any other id is a 404."""
    unit = db().get(OrgUnit, unit_id)
    if unit is None or not is_member_of(member_id, unit_id):
        raise not_found("organization unit")
    return unit


@blp.route("/org-units", methods=["GET"], need="member")
@blp.alt_response(200, schema=UnitListSchema, success=True)
def list_units():
    p = principal()
    session = db()
    units = [unit for unit, _ in member_units(session, p.member_id)]
    org = session.get(Organization, p.org_id)
    return jsonify({"units": UnitSchema(many=True).dump(units), "organization": {"org_id": org.id, "name": org.name}})


@blp.route("/org-units", methods=["POST"], need="own")
@blp.arguments(UnitInSchema)
@blp.response(201, UnitSchema)
def create(data):
    """An Owner of the active OU may add OUs to the organization, and owns them."""
    p = principal()
    session = db()
    unit = create_unit(session, p.org_id, data["name"].strip())
    session.add(Membership(member_id=p.member_id, unit_id=unit.id, role="Owner"))
    session.commit()
    return unit


@blp.route("/org-units/<unit_id>", methods=["PUT"], need="own")
@blp.arguments(UnitInSchema)
@blp.response(200, UnitSchema)
def rename(data, unit_id):
    session = db()
    unit = _member_unit(principal().member_id, unit_id)
    unit.name = data["name"].strip()
    unit.slug = unique_slug(session, unit.org_id, unit.name, exclude_id=unit.id)
    session.commit()
    return unit


@blp.route("/org-units/active", methods=["POST"], need="member", statuses=(404,))
@blp.arguments(ActiveSchema)
@blp.alt_response(200, schema=ActiveUnitSchema, success=True)
def activate(data):
    p = principal()
    unit = _member_unit(p.member_id, data["ouId"])
    resp = jsonify({"active_ou": unit.id, "name": unit.name})
    resp.headers["X-OU-ID"] = unit.id
    select_unit(resp, unit.id)
    return resp
