"""API credentials of an OU: making one (a secret shown once, or a write key bound to origins) and revoking one, for the
API (POST/DELETE /secrets) and the console alike."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from marshmallow import ValidationError

from models.accounts import create_credential
from models.base import utcnow
from models.tenancy import ApiCredential
from webapp.app_state import db
from webapp.auth import current_unit, forget_credential, principal
from webapp.crud import get_scoped
from webapp.errors import bad_request

DEFAULT_PORTS = {"http": 80, "https": 443}
HOST = re.compile(r"[a-z0-9.-]+|\[[0-9a-f:.]+\]")


def origin(value: str) -> str:
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


def make_credential(data: dict) -> ApiCredential:
    """A new credential of the caller's OU from SecretInSchema's data (committed), its secret set on it for this answer
    only: it is stored hashed and never shown again."""
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
        allowed_origins=[origin(o) for o in origins] if origins is not None else None,
    )
    session.commit()
    cred.client_secret = secret  # transient: exists only in this response, never stored
    return cred


def revoke_credential(secret_id: str) -> ApiCredential:
    """Deleted, and no longer honoured by this process at once (by the others within seconds)."""
    session = db()
    cred = get_scoped(ApiCredential, secret_id, "credential")
    session.delete(cred)
    session.commit()
    forget_credential(cred.client_id)
    return cred
