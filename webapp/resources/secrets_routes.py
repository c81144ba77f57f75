"""API credentials of the active OU, managed by its Owners: the secret is shown once and stored hashed."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate, validates

from models.accounts import SCOPES
from models.tenancy import ApiCredential
from webapp.app_state import db
from webapp.blueprint import Blueprint
from webapp.crud import scoped
from webapp.schema_base import StrictSchema, UTCDateTime
from webapp.services.credentials import make_credential, origin, revoke_credential

blp = Blueprint("secrets", __name__, description="API credentials")

MAX_ORIGINS = 20


class SecretInSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=50))

    @validates("name")
    def _name(self, value, **_):
        if not value.strip():
            raise ValidationError("the name is blank")

    scopes = fields.List(
        fields.String(validate=validate.OneOf(SCOPES)),
        load_default=["ingest"],
        validate=validate.Length(min=1, max=len(SCOPES)),
        metadata={"description": "ingest (send events), read, admin (configure); default ingest only"},
    )
    expires_at = UTCDateTime(load_default=None, metadata={"description": "after this the credential stops working"})
    allowed_origins = fields.List(
        fields.String(validate=validate.Length(min=1, max=200)),
        load_default=None,
        validate=validate.Length(min=1, max=MAX_ORIGINS),
        metadata={
            "description": "makes a write key: ingest only, no secret, for a web page; honoured only from these "
            "origins (e.g. https://www.example.com)"
        },
    )

    @validates("allowed_origins")
    def _origins(self, value, **_):
        for given in value or ():
            origin(given)


class SecretSchema(StrictSchema):
    secret_id = fields.String(attribute="id")
    client_id = fields.String(metadata={"description": "for a write key, the key itself"})
    name = fields.String()
    kind = fields.String(metadata={"description": "secret, or write_key"})
    scopes = fields.Function(lambda c: c.scopes.split())
    allowed_origins = fields.List(fields.String(), allow_none=True)
    expires_at = UTCDateTime(allow_none=True)
    last_used_at = UTCDateTime(allow_none=True, metadata={"description": "to within a minute"})
    created_at = UTCDateTime()


class NewSecretSchema(SecretSchema):
    client_secret = fields.String(allow_none=True, metadata={"description": "shown once; none for a write key"})


@blp.route("/secrets", methods=["GET"], need="own")
@blp.response(200, SecretSchema(many=True))
def list_secrets():
    return db().execute(scoped(ApiCredential).order_by(ApiCredential.created_at)).scalars().all()


@blp.route("/secrets", methods=["POST"], need="own")
@blp.arguments(SecretInSchema)
@blp.response(201, NewSecretSchema)
def create(data):
    return make_credential(data)


@blp.route("/secrets/<secret_id>", methods=["DELETE"], need="own")
@blp.response(204)
def delete(secret_id):
    revoke_credential(secret_id)
