"""Every cookie LeadPulse sets or clears: HttpOnly, SameSite=Lax, and Secure outside development.

Lax rather than Strict: the Slack install comes back to /integrations/slack/callback as a top-level navigation from
Slack, which must carry the state cookie.
"""

from __future__ import annotations

from webapp.app_state import state


def set_cookie(response, name: str, value: str, *, max_age: int, path: str = "/") -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, **_flags())


def delete_cookie(response, name: str, *, path: str = "/") -> None:
    response.delete_cookie(name, path=path, **_flags())


def _flags() -> dict:
    # `make run` serves plain http on localhost, where a browser would not send a Secure cookie back.
    return {"httponly": True, "samesite": "Lax", "secure": not state().settings.development}
