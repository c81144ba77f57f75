"""The console's Sources and access pages: a webhook source's secret and an API credential's secret shown once, with
snippets that work as shown (run here against the app over real HTTP), who may see and use them, bad input inline."""

from __future__ import annotations

import dataclasses
import html
import json
import re
import subprocess
import sys

import pytest

from tests.auth_helpers import member_client
from tests.conftest import Api
from tests.console_helpers import csrf_token, form_post, sign_in
from tests.helpers import serving

PASSWORD = "a long enough password"


def shown(r) -> str:
    return html.unescape(r.get_data(as_text=True))


def snippet(page: str, name: str) -> str:
    found = re.search(rf'<pre id="{name}"[^>]*><code>(.*?)</code></pre>', page, re.S)
    assert found, f"no {name} on the page"
    return html.unescape(found[1])


@pytest.fixture
def site(app, client, tenant):
    """The app over HTTP, its public URL set to it (LEADPULSE_PUBLIC_URL): the snippets name it, and run against it."""
    with serving(app) as url:
        state = app.extensions["leadpulse"]
        state.settings = dataclasses.replace(state.settings, public_url=url)
        sign_in(client, tenant.email, tenant.password)
        yield url


def run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_credential_s_secret_is_shown_once_with_a_curl_command_that_works(site, client, api):
    r = form_post(client, "/app/credentials", "/app/credentials", {"name": "Backend"})
    page = r.get_data(as_text=True)
    assert r.status_code == 201 and "shown only now" in page
    secret = snippet(page, "new-secret")
    assert secret.startswith("lps_")
    curl = snippet(page, "snippet-curl")
    assert curl.startswith("curl ") and site + "/ingest" in curl
    out = run(["bash", "-c", curl])  # as pasted into a shell
    assert json.loads(out)["message"] == "event ingested", out
    assert api.get("/lead/crm-42").status_code == 200
    again = client.get("/app/credentials").get_data(as_text=True)
    assert "Backend" in again and secret not in again  # never shown again

    r = form_post(
        client, "/app/credentials", "/app/credentials", {"name": "Site", "allowed_origins": "https://www.example.com\n"}
    )
    assert r.status_code == 201 and "btoa(" in snippet(r.get_data(as_text=True), "snippet-js")
    cred_id = re.search(r'data-credential-id="([^"]+)"', again)[1]
    r = form_post(client, "/app/credentials", f"/app/credentials/{cred_id}/delete", {})
    assert r.status_code == 303 and "revoked=" in r.headers["Location"]


def test_a_source_s_secret_is_shown_once_with_snippets_that_work(site, client, api):
    r = form_post(client, "/app/sources", "/app/sources", {"name": "Site tracker", "kind": "standard"})
    page = r.get_data(as_text=True)
    assert r.status_code == 201 and snippet(page, "new-secret").startswith("whsec_")
    out = run([sys.executable, "-c", snippet(page, "snippet-python")])  # signs with standardwebhooks, posts
    assert out.strip() == "202", out
    r = form_post(client, "/app/sources", "/app/sources", {"name": "Segment", "kind": "segment"})
    page = r.get_data(as_text=True)
    assert r.status_code == 201 and snippet(page, "new-secret").startswith("wk_")

    def events() -> int:
        return api.get("/events", query_string={"limit": 1}).json["total"]

    before = events()
    out = run(["bash", "-c", snippet(page, "snippet-curl")])
    assert json.loads(out)["success"] is True and events() == before + 1, out
    assert run([sys.executable, "-c", snippet(page, "snippet-python")]) == ""  # Segment's own library
    assert events() == before + 2
    listing = client.get("/app/sources").get_data(as_text=True)
    assert "Site tracker" in listing and "whsec_" not in listing and "wk_" not in listing
    source_id = re.search(r'data-source-id="([^"]+)"', listing)[1]
    assert form_post(client, "/app/sources", f"/app/sources/{source_id}/delete", {}).status_code == 303


def test_the_access_forms_show_bad_input_inline(client, tenant, api):
    sign_in(client, tenant.email, tenant.password)
    assert form_post(client, "/app/sources", "/app/sources", {"name": "Tracker"}).status_code == 201
    for body, status, field, message in (
        ({"name": ""}, 400, "name", "Missing data for required field"),
        ({"name": "Tracker"}, 409, "name", "conflicts"),
        ({"name": "HS", "kind": "hubspot"}, 400, "client_secret", "required for kind hubspot only"),
        ({"name": "X", "kind": "carrier-pigeon"}, 400, "kind", "Must be one of"),
    ):
        r = form_post(client, "/app/sources", "/app/sources", body)
        assert r.status_code == status and message in shown(r) and f'id="{field}-error"' in shown(r), (
            body,
            shown(r)[-3000:],
        )
    typed = {"name": "HS", "kind": "hubspot", "client_secret": "tiny"}
    r = form_post(client, "/app/sources", "/app/sources", typed)
    assert r.status_code == 400 and 'id="client_secret-error"' in shown(r) and 'value="tiny"' not in shown(r)
    for body, field, message in (
        ({"name": "  "}, "name", "Missing data for required field"),
        ({"name": "K", "scopes": "root"}, "scopes.0", "Must be one of"),
        ({"name": "K", "expires_at": "2020-01-01T00:00"}, "expires_at", "must be in the future"),
        ({"name": "K", "expires_at": "soon"}, "expires_at", "Not a valid datetime"),
        ({"name": "K", "allowed_origins": "javascript:alert(1)"}, "allowed_origins", "is not an origin"),
        (
            {"name": "K", "allowed_origins": "https://a.example", "scopes": "admin"},
            "scopes",
            "only have the ingest scope",
        ),
    ):
        r = form_post(client, "/app/credentials", "/app/credentials", body)
        assert r.status_code == 400 and message in shown(r), (body, shown(r)[-3000:])
        assert f'id="{field}-error"' in shown(r) or field == "scopes.0", body
    assert [c["name"] for c in api.get("/secrets", headers=member_client(client, tenant)).json] == ["bootstrap"]


def test_who_sees_sources_and_credentials(client, tenant):
    owner = member_client(client, tenant)
    for role in ("Operator", "Viewer"):
        body = {"first_name": role, "email": f"{role.lower()}@example.com", "password": PASSWORD, "role": role}
        assert client.post("/org-members", json=body, headers=owner).status_code == 201
    operator, viewer = client.application.test_client(), client.application.test_client()
    sign_in(operator, "operator@example.com", PASSWORD)
    sign_in(viewer, "viewer@example.com", PASSWORD)
    page = operator.get("/app/sources").get_data(as_text=True)
    assert "Add a source" in page and "API credentials" not in page  # credentials are an Owner's
    r = operator.get("/app/credentials")
    assert r.status_code == 403 and "Owner" in shown(r)
    token = csrf_token(page)
    r = operator.post("/app/credentials", data={"name": "Mine", "csrf_token": token})
    assert r.status_code == 403
    page = viewer.get("/app/sources").get_data(as_text=True)
    assert "Add a source" not in page and "Delete" not in page
    r = viewer.post("/app/sources", data={"name": "Mine", "csrf_token": csrf_token(page)})
    assert r.status_code == 403 and 'data-error-code="forbidden"' in r.get_data(as_text=True)
    assert Api(client, tenant).get("/webhooks/sources").json == []
