"""Who is calling: an API credential (Basic, bound to one OU) or a member (Bearer JWT + activeOu cookie)."""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from flask import current_app, g, request
from sqlalchemy import select

from models.accounts import secret_matches
from models.tenancy import ApiCredential, Member, Membership
from webapp.app_state import db, state
from webapp.errors import ApiError

TOKEN_TTL = timedelta(hours=12)
ACTIVE_OU_COOKIE = "activeOu"


@dataclass(frozen=True)
class Principal:
    org_id: str
    unit_id: str | None
    member_id: str | None = None
    credential_id: str | None = None

    @property
    def is_member(self) -> bool:
        return self.member_id is not None


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Basic realm="leadpulse", Bearer'})


def issue_token(member: Member) -> str:
    now = datetime.now(UTC)
    claims = {"sub": member.id, "org": member.org_id, "iat": now, "exp": now + TOKEN_TTL}
    return jwt.encode(claims, state().secret_key, algorithm="HS256")


def _from_basic(value: str) -> Principal:
    client_id, secret = _decode_basic(value)
    if client_id is None:
        raise unauthorized("malformed Basic credentials")
    found = _principal_of(_credential(client_id) if plausible_id(client_id, 64) else None, secret)
    if found is None:
        raise unauthorized("invalid client credentials")
    return found


def cached_basic_principal(header: str | None) -> Principal | None:
    """The caller of a Basic Authorization header whose credential this process holds cached and whose secret
    matches; None for anything else, which the full path (authenticate) then looks up or refuses."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    client_id, secret = _decode_basic(value.strip())
    return _principal_of(_cached_credential(client_id) if client_id and plausible_id(client_id, 64) else None, secret)


def _decode_basic(value: str) -> tuple[str | None, str]:
    try:
        client_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, ValueError):  # ValueError covers non-ASCII input and bad UTF-8
        return None, ""
    return client_id, secret


def _principal_of(cred, secret: str) -> Principal | None:
    if cred is None or not secret_matches(secret, cred.secret_hash):
        return None
    return Principal(org_id=cred.org_id, unit_id=cred.unit_id, credential_id=cred.id)


CREDENTIAL_TTL = 5.0  # seconds a process trusts a looked-up credential; bounds how long a revoked one lingers
_credentials: dict[str, tuple[float, object]] = {}


def _cached_credential(client_id: str):
    hit = _credentials.get(client_id)
    return hit[1] if hit and hit[0] > time.monotonic() else None


def _credential(client_id: str):
    """The credential row (hash, org, OU), cached briefly per process: ingest is hot, revocation is rare."""
    cred = _cached_credential(client_id)
    if cred is not None:
        return cred
    looked_up = time.monotonic()
    cred = (
        db()
        .execute(
            select(ApiCredential.id, ApiCredential.org_id, ApiCredential.unit_id, ApiCredential.secret_hash).where(
                ApiCredential.client_id == client_id
            )
        )
        .first()
    )
    if len(_credentials) > 10_000:
        _credentials.clear()
    if cred is not None and _revoked.get(client_id, float("-inf")) < looked_up:  # not revoked while we looked
        _credentials[client_id] = (looked_up + CREDENTIAL_TTL, cred)
    return cred


_revoked: dict[str, float] = {}  # client_id -> when this process revoked it (kept a minute)


def forget_credential(client_id: str) -> None:
    """Called on revocation so this process stops honouring it at once (others within CREDENTIAL_TTL), including
    a lookup already under way (a gevent request that read the row just before the revocation committed)."""
    now = time.monotonic()
    for old in [k for k, at in list(_revoked.items()) if at < now - 60]:  # a copy: OS threads may revoke at once
        _revoked.pop(old, None)
    _revoked[client_id] = now
    _credentials.pop(client_id, None)


def plausible_id(value: str, max_len: int) -> bool:
    """Ids we issue are short printable ASCII; anything else cannot match and must not reach SQL."""
    return 0 < len(value) <= max_len and value.isascii() and value.isprintable()


def _from_bearer(token: str) -> Principal:
    try:
        claims = jwt.decode(token, state().secret_key, algorithms=["HS256"], options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise unauthorized("token expired")
    except jwt.PyJWTError:
        raise unauthorized("invalid token")
    member = db().execute(select(Member.id, Member.org_id).where(Member.id == claims["sub"])).first()
    if member is None:
        raise unauthorized("invalid token")
    unit_id = request.cookies.get(ACTIVE_OU_COOKIE)
    if unit_id and (not plausible_id(unit_id, 36) or not is_member_of(member.id, unit_id)):
        unit_id = None  # a cookie naming an OU the member cannot see selects nothing
    return Principal(org_id=member.org_id, unit_id=unit_id, member_id=member.id)


def is_member_of(member_id: str, unit_id: str) -> bool:
    return (
        db()
        .execute(select(Membership.unit_id).where(Membership.member_id == member_id, Membership.unit_id == unit_id))
        .first()
        is not None
    )


def authenticate() -> Principal | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if not header:
        return None
    if scheme == "basic" and value:
        return _from_basic(value.strip())
    if scheme == "bearer" and value:
        return _from_bearer(value.strip())
    raise unauthorized("unsupported Authorization scheme; use Basic client credentials or a Bearer token")


def load_principal() -> None:
    """before_request: resolve the caller once; views then ask for what they need."""
    g.principal = None
    if request.url_rule is None or request.endpoint.startswith(("api-docs.", "static")):
        return  # 404/405 and the OpenAPI docs need no credentials
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "_public", False) or getattr(getattr(view, "view_class", None), "_public", False):
        return
    principal = authenticate()
    if principal is None:
        raise unauthorized("authentication required")
    g.principal = principal


def public(view):
    """Mark a view as reachable without credentials."""
    view._public = True
    return view


def principal() -> Principal:
    return g.principal


def current_unit() -> str:
    """The active OU, or a 400 that says how to pick one."""
    p = g.principal
    if p.unit_id is None:
        raise ApiError(400, "no_active_ou", "no active organization unit: select one with POST /org-units/active")
    return p.unit_id


def require_member() -> Principal:
    p = g.principal
    if not p.is_member:
        raise ApiError(403, "forbidden", "this operation needs a member login (Bearer token), not an API credential")
    return p
