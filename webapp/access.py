"""Who may do what: the one table of permissions, checked before every view runs (docs/guarantees.md).

A route needs one permission: `read`, `ingest`, `configure` (scoring, levels, integrations, data changes) or `own`
(members, roles, credentials), each in an OU; or `member` (any signed-in member, no OU needed) or `caller` (anyone
authenticated). GET needs `read` and every other method `configure` unless the route says otherwise
(`Blueprint.route(..., need=...)`). Members get permissions from their role in the OU, credentials from their scopes.
"""

from __future__ import annotations

from models.accounts import ROLES, SCOPES

ROLE_GRANTS: dict[str, frozenset[str]] = {
    "Viewer": frozenset({"read"}),
    "Operator": frozenset({"read", "ingest", "configure"}),
    "Owner": frozenset({"read", "ingest", "configure", "own"}),
}
# No scope grants `own`: a credential, however broad, can neither mint credentials nor manage members, so a leaked
# key cannot make itself permanent.
SCOPE_GRANTS: dict[str, frozenset[str]] = {
    "ingest": frozenset({"ingest"}),
    "read": frozenset({"read"}),
    "admin": frozenset({"read", "ingest", "configure"}),
}
OU_NEEDS = ("read", "ingest", "configure", "own")
NEEDS = (*OU_NEEDS, "member", "caller")
assert set(ROLE_GRANTS) == set(ROLES) and set(SCOPE_GRANTS) == set(SCOPES)


def default_need(method: str) -> str:
    return "read" if method in ("GET", "HEAD", "OPTIONS") else "configure"


def _declared(view, attribute: str, method: str):
    """A route's mark: on a MethodView's method, else its class, else on the view function."""
    view_class = getattr(view, "view_class", None)
    name = method.lower()
    for holder in (getattr(view_class, name, None), view_class, getattr(view, name, None), view):
        value = getattr(holder, attribute, None)
        if value is not None:
            return value
    return None


def need_of(view, method: str) -> str | None:
    """What the route needs for this method; None for a public route."""
    if _declared(view, "_public", method):
        return None
    return _declared(view, "_need", method) or default_need(method)


def member_only(view, method: str) -> bool:
    """Whether the route is for members only (it records who did it, or runs a browser flow such as OAuth)."""
    return bool(_declared(view, "_member_only", method))


def session_cookie(view, method: str) -> bool:
    """Whether a member's console session cookie may stand for the Authorization header (the console's pages and the
    stream its pages listen to); a state-changing request so signed in also needs its CSRF token (webapp/csrf.py)."""
    return bool(_declared(view, "_session_cookie", method))


def browser_allowed(view, method: str) -> bool:
    """Whether a write key (the credential a web page carries) may call the route."""
    return bool(_declared(view, "_browser", method))


def grants(role: str | None, scopes: frozenset[str] | None) -> frozenset[str]:
    """A member's permissions from its role in the OU, a credential's from its scopes."""
    if scopes is None:
        return ROLE_GRANTS.get(role or "", frozenset())
    return frozenset().union(*(SCOPE_GRANTS.get(s, frozenset()) for s in scopes))
