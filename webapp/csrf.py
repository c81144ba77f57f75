"""CSRF protection for what a browser signs in by cookie (the console, docs/console.md): a token per login session,
derived from the session's id with the instance's secret key, sent back in a form field or the X-CSRF-Token header and
compared in constant time. The sign-in form, which has no session yet, binds its token to a random pre-session cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import request

from webapp.app_state import state
from webapp.errors import ApiError

HEADER = "X-CSRF-Token"
FIELD = "csrf_token"
PRESESSION_COOKIE = "lp_presession"
SAFE_METHODS = frozenset(("GET", "HEAD", "OPTIONS"))
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


def _token(binding: str) -> str:
    key = state().secret_key.encode()
    return hmac.new(key, f"leadpulse-csrf:{binding}".encode(), hashlib.sha256).hexdigest()


def session_token(session_id: str) -> str:
    """The token of one login session: it ends with the session, and no other session's works."""
    return _token(f"session:{session_id}")


def presession_token(nonce: str) -> str:
    return _token(f"presession:{nonce}")


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def _sent() -> str:
    given = request.headers.get(HEADER)
    if given is None and request.mimetype in FORM_TYPES:
        given = request.form.get(FIELD)
    return given or ""


def _refused() -> ApiError:
    return ApiError(
        403,
        "csrf_failed",
        "this form has expired or did not come from LeadPulse's own pages: reload the page and try again",
        {FIELD: ["missing or wrong"]},
    )


def require_for_session(session_id: str) -> None:
    """before a state-changing request signed in by the session cookie: its token, or a 403."""
    if request.method in SAFE_METHODS:
        return
    if not hmac.compare_digest(_sent().encode(), session_token(session_id).encode()):
        raise _refused()


def require_presession() -> None:
    """The sign-in form's token, bound to the pre-session cookie its page set: a login no other site can post."""
    nonce = request.cookies.get(PRESESSION_COOKIE, "")
    if not nonce or not hmac.compare_digest(_sent().encode(), presession_token(nonce).encode()):
        raise _refused()
