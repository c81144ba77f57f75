"""The console's pages on the server: sign-in, CSRF, roles, the tenant boundary and every form's bad input shown inline
(never a 500); tests/test_console_browser.py drives the same pages in a real Chromium."""

from __future__ import annotations

from tests.auth_helpers import member_client
from tests.console_helpers import csrf_token, form_post, sign_in
from tests.helpers import REFERENCE_LEVELS, create_levels, ingest, published_ruleset, settle


def test_signing_in_sets_an_httponly_session_and_lands_on_the_leads(client, tenant):
    assert client.get("/app/leads").headers["Location"] == "/app/sign-in?next=%2Fapp%2Fleads"
    r = sign_in(client, tenant.email, tenant.password)
    cookie = next(h for h in r.headers.getlist("Set-Cookie") if h.startswith("lp_session="))
    assert {"HttpOnly", "Secure", "SameSite=Lax"} <= {part.strip() for part in cookie.split(";")}
    assert r.headers["Location"] == "/app/leads"  # the member's only OU is picked at once
    assert client.get("/app/").headers["Location"] == "/app/leads"
    page = client.get("/app/leads")
    assert page.status_code == 200 and "Leads" in page.get_data(as_text=True)
    assert "Content-Security-Policy" in page.headers and "unsafe-inline" not in page.headers["Content-Security-Policy"]
