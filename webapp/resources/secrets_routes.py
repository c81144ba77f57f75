"""API credentials of the active OU, managed by its Owners: the secret is shown once and stored hashed."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from marshmallow import ValidationError, fields, validate, validates

from models.accounts import SCOPES, create_credential
from models.base import utcnow
from models.tenancy import ApiCredential
from webapp.app_state import db
from webapp.auth import current_unit, forget_credential, principal
from webapp.blueprint import Blueprint
from webapp.crud import get_scoped, scoped
from webapp.errors import bad_request
from webapp.schema_base import StrictSchema, UTCDateTime

blp = Blueprint("secrets", __name__, description="API credentials")

MAX_ORIGINS = 20


DEFAULT_PORTS = {"http": 80, "https": 443}
HOST = re.compile(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]")


def _origin(value: str) -> str:
    """An origin exactly as a browser sends it in Origin: scheme://host[:port], lowercase, no default port."""
    problem = ValidationError(f"{value!r} is not an origin like https://www.example.com")
    try:
        parts = urlsplit(value.lower())
        port = parts.port
    except ValueError:
        raise problem from None
    host = parts.netloc.rpartition(":")[0] if port is not None else parts.netloc
    if (
        parts.scheme not in DEFAULT_PORTS
        or not HOST.fullmatch(host or "")
        or parts.path
        or parts.query
        or parts.fragment
        or "@" in parts.netloc
    ):
        raise problem
    return f"{parts.scheme}://{host}" + (f":{port}" if port not in (None, DEFAULT_PORTS[parts.scheme]) else "")


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
        for origin in value or ():
            _origin(origin)


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
    p = principal()
    if data["expires_at"] is not None and data["expires_at"] <= utcnow():
        raise bad_request("expires_at must be in the future", "expires_at")
    origins = data["allowed_origins"]
    if origins is not None and set(data["scopes"]) != {"ingest"}:
        raise bad_request("a write key can only have the ingest scope", "scopes")
    session = db()
    cred, secret = create_credential(
        session,
        p.org_id,
        current_unit(),
        data["name"].strip(),
        created_by=p.member_id,
        scopes=tuple(data["scopes"]),
        expires_at=data["expires_at"],
        allowed_origins=[_origin(o) for o in origins] if origins is not None else None,
    )
    session.commit()
    cred.client_secret = secret  # transient: exists only in this response, never stored
    return cred


@blp.route("/secrets/<secret_id>", methods=["DELETE"], need="own")
@blp.response(204)
def delete(secret_id):
    session = db()
    cred = get_scoped(ApiCredential, secret_id, "credential")
    session.delete(cred)
    session.commit()
    forget_credential(cred.client_id)
