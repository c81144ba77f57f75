"""Driving the console as a browser without JavaScript would: its forms, their CSRF tokens and its cookies."""

from __future__ import annotations

import re

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(page_html: str) -> str:
    found = TOKEN.search(page_html)
    assert found, "the page has no form with a CSRF token"
    return found[1]


def sign_in(client, email: str, password: str, unit_id: str | None = None):
    """Sign in through the sign-in form (the client keeps the cookies); pick unit_id when given."""
    page = client.get("/app/sign-in")
    assert page.status_code == 200
    r = client.post(
        "/app/sign-in",
        data={"email": email, "password": password, "csrf_token": csrf_token(page.get_data(as_text=True))},
    )
    assert r.status_code == 303, r.get_data(as_text=True)
    if unit_id:
        token = csrf_token(client.get("/app/units").get_data(as_text=True))
        assert client.post("/app/units", data={"ouId": unit_id, "csrf_token": token}).status_code == 303
    return r


def form_post(client, page_path: str, action: str, data: dict):
    """Post a form the way the page at page_path would: with the token that page carries."""
    token = csrf_token(client.get(page_path).get_data(as_text=True))
    return client.post(action, data={**data, "csrf_token": token})
