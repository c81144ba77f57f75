"""Who is calling: an API credential (Basic, bound to one OU) or a member (Bearer JWT + activeOu cookie), and
whether the route lets them (webapp/access.py's table, checked here for every route)."""

from __future__ import annotations

import base64
import binascii
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import jwt
from flask import current_app, g, request
from sqlalchemy import or_, select, update

from models.accounts import WRITE_KEY, secret_matches
from models.base import utcnow
from models.change_history import CREDENTIAL, MEMBER, Actor
from models.client_ids import issued_here, legacy_shape
from models.members import role_in, session_member, start_session
from models.tenancy import ApiCredential, Member
from webapp import access, csrf
from webapp.app_state import db, state
from webapp.cookies import set_cookie
from webapp.errors import ApiError, not_found

ACTIVE_OU_COOKIE = "activeOu"
ACTIVE_OU_SECONDS = 30 * 24 * 3600
SESSION_COOKIE = "lp_session"  # the console's login: the member's token, HttpOnly (webapp/cookies.py)
LAST_USED_EVERY = timedelta(minutes=1)  # how stale a credential's last_used_at may get: one write a minute at most
log = logging.getLogger("leadpulse.auth")


@dataclass(frozen=True)
class Principal:
    org_id: str
    unit_id: str | None
    member_id: str | None = None
    credential_id: str | None = None
    role: str | None = None  # a member's role in unit_id
    scopes: frozenset[str] | None = None  # a credential's
    origins: tuple[str, ...] | None = None  # a write key's allowed origins
    session_id: str | None = None  # a member's login

    @property
    def is_member(self) -> bool:
        return self.member_id is not None

    @property
    def is_write_key(self) -> bool:
        return self.origins is not None

    @property
    def grants(self) -> frozenset[str]:
        return access.grants(self.role, self.scopes)

    @property
    def actor(self) -> Actor:
        """Who a change's history entry names: the member, else the credential (docs/history.md)."""
        return Actor(MEMBER, self.member_id) if self.is_member else Actor(CREDENTIAL, self.credential_id)


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": 'Basic realm="leadpulse", Bearer'})


def forbidden(message: str) -> ApiError:
    return ApiError(403, "forbidden", message)


def sign_in(member: Member) -> tuple[str, datetime]:
    """A new login session and its token (committed): the token names the session, so it can be ended early."""
    session = db()
    login = start_session(session, member.id, timedelta(minutes=state().settings.token_minutes))
    session.commit()
    claims = {"sub": member.id, "org": member.org_id, "jti": login.id, "iat": login.created_at, "exp": login.expires_at}
    return jwt.encode(claims, state().secret_key, algorithm="HS256"), login.expires_at


def _from_basic(value: str) -> Principal:
    client_id, secret = _decode_basic(value)
    if client_id is None:
        raise unauthorized("malformed Basic credentials")
    cred = _credential(client_id) if may_exist(client_id) else None
    found = _principal_of(cred, secret)
    if found is None:
        raise unauthorized("invalid client credentials")
    if cred.last_used_at is None or cred.last_used_at < utcnow() - LAST_USED_EVERY:
        g.credential_used = cred.id  # stamped at teardown (record_use); a wrong secret never counts as a use
    return found


def cached_basic_principal(header: str | None) -> Principal | None:
    """The caller of a Basic Authorization header whose credential this process holds cached and whose secret
    matches; None for anything else, which the full path (authenticate) then looks up or refuses."""
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    client_id, secret = _decode_basic(value.strip())
    return _principal_of(_cached_credential(client_id) if client_id and plausible_id(client_id, 64) else None, secret)


def may_exist(client_id: str) -> bool:
    """Whether a client id could be one of ours: an id we never issued costs no database query."""
    if not plausible_id(client_id, 64):
        return False
    if issued_here(client_id, state().client_id_key):
        return True
    return legacy_shape(client_id) and state().legacy_client_ids


def _decode_basic(value: str) -> tuple[str | None, str]:
    try:
        client_id, _, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, ValueError):  # ValueError covers non-ASCII input and bad UTF-8
        return None, ""
    return client_id, secret


def _principal_of(cred, secret: str) -> Principal | None:
    """The caller a credential row vouches for: a secret that matches (a write key has none), not expired."""
    if cred is None or (cred.expires_at is not None and cred.expires_at <= utcnow()):
        return None
    if not (secret == "" if cred.kind == WRITE_KEY else secret_matches(secret, cred.secret_hash)):
        return None
    return Principal(
        org_id=cred.org_id,
        unit_id=cred.unit_id,
        credential_id=cred.id,
        scopes=frozenset(cred.scopes.split()),
        origins=tuple(cred.allowed_origins or ()) if cred.kind == WRITE_KEY else None,
    )


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
    cred = db().execute(select(*CREDENTIAL_COLUMNS).where(ApiCredential.client_id == client_id)).first()
    if len(_credentials) > 10_000:
        _credentials.clear()
    if cred is not None and _revoked.get(client_id, float("-inf")) < looked_up:  # not revoked while we looked
        _credentials[client_id] = (looked_up + CREDENTIAL_TTL, cred)
    return cred


CREDENTIAL_COLUMNS = (
    ApiCredential.id,
    ApiCredential.org_id,
    ApiCredential.unit_id,
    ApiCredential.secret_hash,
    ApiCredential.kind,
    ApiCredential.scopes,
    ApiCredential.allowed_origins,
    ApiCredential.expires_at,
    ApiCredential.last_used_at,
)


def record_use(_exc=None) -> None:
    """teardown: stamp last_used_at in a transaction of its own, after the request's (a read-only request counts
    too, and on SQLite the request's write lock is released by then)."""
    credential_id = g.pop("credential_used", None)
    if credential_id is None:
        return
    now = utcnow()
    try:
        with state().WriterSession() as session, session.begin():
            session.execute(
                update(ApiCredential)
                .where(
                    ApiCredential.id == credential_id,
                    or_(ApiCredential.last_used_at.is_(None), ApiCredential.last_used_at < now - LAST_USED_EVERY),
                )
                .values(last_used_at=now)
            )
    except Exception as exc:  # a bookkeeping write never fails the request that was already answered
        log.warning("could not record a credential's last use: %s", type(exc).__name__)


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
        claims = jwt.decode(token, state().secret_key, algorithms=["HS256"], options={"require": ["sub", "exp", "jti"]})
    except jwt.ExpiredSignatureError:
        raise unauthorized("token expired: sign in again")
    except jwt.PyJWTError:
        raise unauthorized("invalid token")
    if not all(isinstance(claims[k], str) and plausible_id(claims[k], 36) for k in ("sub", "jti")):
        raise unauthorized("invalid token")
    member = session_member(db(), claims["jti"], claims["sub"], utcnow())
    if member is None:
        raise unauthorized("this session has ended: sign in again")
    unit_id, role = request.cookies.get(ACTIVE_OU_COOKIE), None
    if unit_id and plausible_id(unit_id, 36):
        role = role_in(db(), member.id, unit_id)
    if role is None:
        unit_id = None  # a cookie naming an OU the member cannot see selects nothing
    return Principal(org_id=member.org_id, unit_id=unit_id, member_id=member.id, role=role, session_id=claims["jti"])


def select_unit(response, unit_id: str) -> None:
    """The member's pick of an active OU (checked again on every request: a role lost since selects nothing)."""
    set_cookie(response, ACTIVE_OU_COOKIE, unit_id, max_age=ACTIVE_OU_SECONDS)


def is_member_of(member_id: str, unit_id: str) -> bool:
    return role_in(db(), member_id, unit_id) is not None


def authenticate(cookie_ok: bool = False) -> Principal | None:
    """The caller of the Authorization header; without one, on a route that takes it (cookie_ok), the member of the
    console's session cookie, whose state-changing requests must also carry its CSRF token."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if not header:
        token = request.cookies.get(SESSION_COOKIE) if cookie_ok else None
        if not token:
            return None
        p = _from_bearer(token)
        csrf.require_for_session(p.session_id)
        return p
    if scheme == "basic" and value:
        return _from_basic(value.strip())
    if scheme == "bearer" and value:
        return _from_bearer(value.strip())
    raise unauthorized("unsupported Authorization scheme; use Basic client credentials or a Bearer token")


def load_principal() -> None:
    """before_request: resolve the caller once and check the route lets them; views then ask for what they need."""
    g.principal = None
    if request.url_rule is None or request.endpoint.startswith(("api-docs.", "static")) or request.method == "OPTIONS":
        return  # 404/405, the OpenAPI docs and CORS preflights (which say only what a route allows) need none
    view = current_app.view_functions.get(request.endpoint)
    need = access.need_of(view, request.method)
    if need is None:
        return
    principal = authenticate(access.session_cookie(view, request.method))
    if principal is None:
        raise unauthorized("authentication required")
    method = request.method
    g.principal = authorize(principal, need, access.browser_allowed(view, method), access.member_only(view, method))


def authorize(p: Principal, need: str, browser_ok: bool = False, member_only: bool = False) -> Principal:
    """The caller, in the OU the route acts on, if the table lets it do what the route needs; else 403 (or 404 for
    an OU in the path that the caller is not in, as for any other OU's object)."""
    if p.is_write_key:
        if not browser_ok:
            raise forbidden("a write key can only send events (POST /ingest, /events, /ingest/batch)")
        origin = request.headers.get("Origin")
        if origin not in p.origins:
            raise forbidden(f"this write key is not allowed from origin {origin or '(none)'}: add it to the key")
    if need == "caller":
        return p
    if need == "member" or member_only:
        if not p.is_member:
            raise forbidden("this operation needs a member login (Bearer token), not an API credential")
    if need == "member":
        return p
    path_unit = (request.view_args or {}).get("unit_id")
    if path_unit is not None:
        p = _in_unit(p, path_unit)
    elif p.unit_id is None:
        raise ApiError(400, "no_active_ou", "no active organization unit: select one with POST /org-units/active")
    if need not in p.grants:
        raise forbidden(_refusal(p, need))
    return p


def _in_unit(p: Principal, unit_id: str) -> Principal:
    """The caller acting on the OU a path names (its role there, for a member); an OU it is not in is a 404."""
    if p.is_member:
        role = role_in(db(), p.member_id, unit_id) if plausible_id(unit_id, 36) else None
        if role is not None:
            return replace(p, unit_id=unit_id, role=role)
    elif unit_id == p.unit_id:
        return p
    raise not_found("organization unit")


def _refusal(p: Principal, need: str) -> str:
    if p.is_member:
        roles = " or ".join(r for r, granted in access.ROLE_GRANTS.items() if need in granted)
        return f"your role in this organization unit ({p.role}) cannot do this: it needs {roles}"
    scopes = " or ".join(s for s, granted in access.SCOPE_GRANTS.items() if need in granted)
    if not scopes:
        return "API credentials cannot do this: it needs a member login (Bearer token) with the Owner role"
    return f"this credential's scopes ({' '.join(sorted(p.scopes))}) cannot do this: it needs the {scopes} scope"


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
