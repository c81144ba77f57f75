"""API credentials of the active OU, managed by members: the secret is shown once and stored hashed."""

from __future__ import annotations

from marshmallow import fields, validate

from models.accounts import create_credential
from models.tenancy import ApiCredential
from webapp.app_state import db
from webapp.auth import current_unit, forget_credential, require_member
from webapp.blueprint import Blueprint
from webapp.crud import get_scoped, scoped
from webapp.schema_base import StrictSchema, UTCDateTime

blp = Blueprint("secrets", __name__, description="API credentials")


class SecretInSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=50))


class SecretSchema(StrictSchema):
    secret_id = fields.String(attribute="id")
    client_id = fields.String()
    name = fields.String()
    created_at = UTCDateTime()


class NewSecretSchema(SecretSchema):
    client_secret = fields.String()


@blp.route("/secrets", methods=["GET"], statuses=(403,))
@blp.response(200, SecretSchema(many=True))
def list_secrets():
    require_member()
    return db().execute(scoped(ApiCredential).order_by(ApiCredential.created_at)).scalars().all()


@blp.route("/secrets", methods=["POST"], statuses=(403,))
@blp.arguments(SecretInSchema)
@blp.response(201, NewSecretSchema)
def create(data):
    p = require_member()
    session = db()
    cred, secret = create_credential(session, p.org_id, current_unit(), data["name"].strip(), created_by=p.member_id)
    session.commit()
    cred.client_secret = secret  # transient: exists only in this response, never stored
    return cred


@blp.route("/secrets/<secret_id>", methods=["DELETE"], statuses=(403,))
@blp.response(204)
def delete(secret_id):
    require_member()
    session = db()
    cred = get_scoped(ApiCredential, secret_id, "credential")
    session.delete(cred)
    session.commit()
    forget_credential(cred.client_id)
