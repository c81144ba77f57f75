"""Signing a member in: the address's attempt allowance, the hold failed attempts earn, then the password check."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from integrations.request_limits import LimitsUnavailable, seconds
from models.accounts import password_matches
from models.members import end_session
from models.tenancy import Member
from webapp import audit_trail
from webapp.app_state import db, state
from webapp.auth import sign_in, unauthorized
from webapp.errors import ApiError
from webapp.offload import off_loop
from webapp.rate_limits import limit_login


def verify_login(email: str, password: str, address: str) -> Member:
    """The member these are the email and password of; else a 401 that never says which was wrong, or a 429 with the
    wait. The hold is the same for an email no member has, so neither answer tells whether an email exists."""
    app_state = state()
    email = email.strip().lower()
    limit_login(app_state, address)
    try:
        wait = app_state.lockout.wait(email, address)
    except LimitsUnavailable:
        # Fails closed, unlike the request limits: without the count, password guessing would go unchecked. API
        # credentials and tokens already issued keep working; only new sign-ins wait for Redis.
        raise ApiError(
            503,
            "unavailable",
            "sign-in is paused while its guard against password guessing is unreachable; retry shortly",
            headers={"Retry-After": "5"},
        )
    if wait > 0:
        raise ApiError(
            429,
            "too_many_failures",
            f"too many failed sign-ins for this email; retry in {seconds(wait)} s",
            headers={"Retry-After": str(seconds(wait))},
        )
    member = db().execute(select(Member).where(Member.email == email)).scalar()
    # argon2 takes ~0.1 s of CPU in C: under gevent it runs in a native thread so the worker's other requests go on.
    if not off_loop(password_matches, password, member.password_hash if member else None):
        app_state.lockout.failed(email, address)
        raise unauthorized("invalid email or password")
    app_state.lockout.succeeded(email, address)
    return member


def log_in(email: str, password: str, address: str) -> tuple[Member, str, datetime]:
    """(member, token, expiry) of a new login session, for the API's and the console's sign-in alike. Its audit entry
    names only the email tried, under no OU, until it succeeds: where it goes never tells whether an email exists
    (docs/audit-log.md)."""
    email = email.strip().lower()
    audit_trail.attribute(email=email)
    member = verify_login(email, password, address)
    audit_trail.attribute(org_id=member.org_id, member_id=member.id, email=member.email)
    token, expires_at = sign_in(member)
    return member, token, expires_at


def log_out(session_id: str) -> None:
    """Ends one login: its token (and the console cookie carrying it) stops working at once, on every web process."""
    session = db()
    end_session(session, session_id)
    session.commit()
