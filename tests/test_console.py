"""The console's pages on the server: sign-in, CSRF, roles, the tenant boundary, keyset pages and every form's bad input
shown inline (never a 500); tests/test_console_browser.py drives the same pages in a real Chromium."""

from __future__ import annotations

import dataclasses
import html
import re

from tests.auth_helpers import member_client
from tests.conftest import Api
from tests.console_helpers import csrf_token, form_post, sign_in
from tests.fakes import FakeHubSpot
from tests.helpers import create_levels, ingest, published_ruleset, settle
from webapp import create_app

PASSWORD = "a long enough password"


def text(r) -> str:
    return r.get_data(as_text=True)


def shown(r) -> str:
    """The page's text as a person reads it (entities decoded)."""
    return html.unescape(text(r))


def levels_of(api) -> list[str]:
    return [lv["name"] for lv in api.get("/engagement-levels").json["levels"]]


def add_member(client, tenant, role: str, email: str) -> None:
    owner = member_client(client, tenant)
    body = {"first_name": role, "email": email, "password": PASSWORD, "role": role}
    assert client.post("/org-members", json=body, headers=owner).status_code == 201


def test_signing_in_sets_an_httponly_session_and_lands_on_the_leads(client, tenant):
    assert client.get("/app/leads").headers["Location"] == "/app/sign-in?next=%2Fapp%2Fleads"
    r = sign_in(client, tenant.email, tenant.password)
    cookie = next(h for h in r.headers.getlist("Set-Cookie") if h.startswith("lp_session="))
    assert {"HttpOnly", "Secure", "SameSite=Lax"} <= {part.strip() for part in cookie.split(";")}
    assert r.headers["Location"] == "/app/leads"  # the member's only OU is picked at once
    assert client.get("/app/").headers["Location"] == "/app/leads"
    page = client.get("/app/leads")
    assert page.status_code == 200 and "<h1>Leads</h1>" in text(page)
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and page.headers["Cache-Control"] == "no-store"
    assert "<script>" not in text(page) and " style=" not in text(page)  # nothing inline for the CSP to refuse


def test_the_sign_in_form_shows_bad_input_inline(client, tenant):
    page = client.get("/app/sign-in")
    token = csrf_token(text(page))
    cases = [
        ({"email": "", "password": "x"}, 400, "Missing data for required field"),
        ({"email": "not-an-email", "password": "x"}, 400, "Not a valid email address"),
        ({"email": tenant.email, "password": "wrong password"}, 401, "invalid email or password"),
    ]
    for body, status, message in cases:
        r = client.post("/app/sign-in", data={**body, "csrf_token": token})
        assert r.status_code == status and message in text(r), (body, r.status_code, text(r)[:300])
        assert r.mimetype == "text/html" and 'role="alert"' in text(r)
    r = client.post("/app/sign-in", data={"email": tenant.email, "password": tenant.password})
    assert r.status_code == 403 and "reload the page" in text(r)  # no token: a login another site could post
    assert "lp_session" not in r.headers.get("Set-Cookie", "")
    other = tenant.client_id  # any value but the token of this browser's page
    r = client.post("/app/sign-in", data={"email": tenant.email, "password": tenant.password, "csrf_token": other})
    assert r.status_code == 403


def test_a_next_address_that_leaves_the_console_is_ignored(client, tenant):
    for evil in ("https://evil.example/", "//evil.example/app/x", "/app\\@evil.example"):
        token = csrf_token(text(client.get("/app/sign-in")))
        body = {"email": tenant.email, "password": tenant.password, "csrf_token": token, "next": evil}
        r = client.post("/app/sign-in", data=body)
        assert r.status_code == 303 and r.headers["Location"] == "/app/leads", evil


def test_state_changing_requests_need_the_session_s_csrf_token(client, api, tenant):
    sign_in(client, tenant.email, tenant.password)
    body = {"name": "Cold", "min_score": "0", "max_score": "24"}
    for token in (None, "", "0" * 64, csrf_token(text(client.get("/app/sign-in")))):  # none, empty, made up, another's
        data = body if token is None else {**body, "csrf_token": token}
        r = client.post("/app/levels", data=data)
        assert r.status_code == 403 and 'data-error-code="csrf_failed"' in text(r), token
    assert client.post("/app/sign-out").status_code == 403  # not even signing out
    assert levels_of(api) == []
    token = csrf_token(text(client.get("/app/levels")))
    r = client.post("/app/levels", data=body, headers={"X-CSRF-Token": token})  # as htmx sends it
    assert r.status_code == 303 and r.headers["Location"] == "/app/levels?created=Cold"
    assert levels_of(api) == ["Cold"]
    # Another login's token does not work in this one, and a token dies with its session.
    other = app_client(client)
    sign_in(other, tenant.email, tenant.password)
    r = other.post("/app/levels", data={**body, "name": "Warm", "min_score": "25", "csrf_token": token})
    assert r.status_code == 403
    assert client.post("/app/sign-out", data={"csrf_token": token}).status_code == 303
    assert client.get("/app/levels").headers["Location"].startswith("/app/sign-in")


def app_client(client):
    return client.application.test_client()


def test_a_bearer_token_needs_no_csrf_token_and_an_api_credential_is_refused(client, api, tenant):
    owner = member_client(client, tenant)
    r = client.post("/app/levels", data={"name": "Cold", "min_score": "0"}, headers=owner)
    assert r.status_code == 303  # an Authorization header is no ambient credential: nothing to forge
    r = client.get("/app/leads", headers=tenant.auth)
    assert r.status_code == 403 and "member login" in text(r) and r.mimetype == "text/html"


def test_a_viewer_sees_no_edit_controls_and_is_refused(client, api, tenant):
    create_levels(api)
    add_member(client, tenant, "Viewer", "vera@example.com")
    viewer = app_client(client)
    sign_in(viewer, "vera@example.com", PASSWORD)
    page = text(viewer.get("/app/levels"))
    assert "Cold" in page and "Very Hot" in page
    for control in ("Add level", ">Edit<", ">Delete<", "Create levels", "/app/levels/"):
        assert control not in page, control
    token = csrf_token(page)  # the sign-out form's: a Viewer's session still has one
    level_id = api.get("/engagement-levels").json["levels"][0]["id"]
    for path, data in (
        ("/app/levels", {"name": "Frozen", "min_score": "-10", "max_score": "-1"}),
        (f"/app/levels/{level_id}", {"name": "Renamed", "min_score": "0", "max_score": "24"}),
        (f"/app/levels/{level_id}/delete", {}),
        ("/app/levels/reference", {}),
    ):
        r = viewer.post(path, data={**data, "csrf_token": token})
        assert r.status_code == 403 and "Operator or Owner" in text(r) and 'data-error-code="forbidden"' in text(r)
        assert "Traceback" not in text(r)
    assert viewer.get(f"/app/levels/{level_id}/edit").status_code == 200  # reading is allowed; saving is not
    assert levels_of(api) == ["Cold", "Warm", "Hot", "Very Hot"]


def test_the_level_forms_show_the_api_s_refusals_inline(client, api, tenant):
    sign_in(client, tenant.email, tenant.password)
    r = form_post(client, "/app/levels", "/app/levels/reference", {})
    assert r.status_code == 303 and levels_of(api) == ["Cold", "Warm", "Hot", "Very Hot"]
    assert form_post(client, "/app/levels", "/app/levels/reference", {}).status_code == 409  # has levels already
    cases = [
        ({"min_score": "0"}, 400, "name", "Missing data for required field"),
        ({"name": "X", "min_score": "abc"}, 400, "min_score", "Not a valid integer"),
        ({"name": "X", "min_score": "200", "max_score": "100"}, 400, "max_score", "must not be below min_score"),
        ({"name": "X", "min_score": "200", "color": "red"}, 400, "color", "Invalid color format"),
        ({"name": "Lukewarm", "min_score": "10", "max_score": "30"}, 400, "min_score", "'Cold' (0-24) and 'Lukewarm'"),
        ({"name": "hot", "min_score": "500"}, 409, "name", "already exists"),
        ({"name": "X" * 101, "min_score": "500"}, 400, "name", "Length must be between 1 and 100"),
        ({"name": "X", "min_score": "99999999999999999999"}, 400, "min_score", "Must be greater than or equal to"),
        ({"name": "Nul\x00", "min_score": "500"}, 400, "name", "NUL"),
    ]
    for body, status, field, message in cases:
        r = form_post(client, "/app/levels", "/app/levels", body)
        page = shown(r)
        assert r.status_code == status, (body, r.status_code, page[:500])
        assert message in page and f'id="{field}-error"' in page, (body, page[:2000])
        assert re.search(rf'name="{field}"[^>]*aria-invalid="true"', page), body
    assert levels_of(api) == ["Cold", "Warm", "Hot", "Very Hot"]

    hot = next(lv for lv in api.get("/engagement-levels").json["levels"] if lv["name"] == "Hot")
    edit = f"/app/levels/{hot['id']}/edit"
    r = form_post(client, edit, f"/app/levels/{hot['id']}", {"name": "Hot", "min_score": "40", "max_score": "74"})
    assert r.status_code == 400 and "'Warm' (25-49) and 'Hot' (40-74)" in shown(r) and "Edit Hot" in text(r)
    r = form_post(client, edit, f"/app/levels/{hot['id']}", {"name": "Hot", "min_score": "50", "max_score": "79"})
    assert r.status_code == 400 and "overlap" in text(r)
    r = form_post(client, edit, f"/app/levels/{hot['id']}", {"name": "Hot!", "min_score": "50", "max_score": "74"})
    assert r.status_code == 303 and "Hot!" in levels_of(api)
    for lv in api.get("/engagement-levels").json["levels"][:-1]:
        r = form_post(client, "/app/levels", f"/app/levels/{lv['id']}/delete", {})
        assert r.status_code == 303
    last = api.get("/engagement-levels").json["levels"][0]["id"]
    r = form_post(client, "/app/levels", f"/app/levels/{last}/delete", {})
    assert r.status_code == 400 and "cannot delete the last engagement level" in text(r)


def test_another_ou_s_objects_are_a_404_page(client, api, tenant, other_tenant, app, run_worker):
    theirs = Api(client, other_tenant)
    their_level = create_levels(theirs)["Hot"]
    theirs.post("/ingest", json={"lead_id": "theirs-1", "event_type": "page_view"})
    sign_in(client, tenant.email, tenant.password)
    token = csrf_token(text(client.get("/app/leads")))
    for method, path in (
        ("GET", "/app/leads/theirs-1"),
        ("GET", "/app/leads/no-such-lead"),
        ("GET", f"/app/levels/{their_level}/edit"),
        ("POST", f"/app/levels/{their_level}"),
        ("POST", f"/app/levels/{their_level}/delete"),
        ("GET", "/app/no/such/page"),
    ):
        r = client.open(path, method=method, data={"csrf_token": token, "name": "x", "min_score": "1"})
        page = text(r)
        assert r.status_code == 404 and r.mimetype == "text/html", (path, r.status_code)
        assert 'data-error-code="not_found"' in page and "theirs" not in page and their_level not in page
    assert levels_of(theirs) == ["Cold", "Warm", "Hot", "Very Hot"]
    # Their OU's id in the OU picker is not theirs to pick.
    r = client.post("/app/units", data={"csrf_token": token, "ouId": other_tenant.unit_id})
    assert r.status_code == 400 and "not a member" in text(r)


def test_the_leads_page_filters_and_pages_by_keyset(client, app, api, tenant, run_worker):
    create_levels(api)
    published_ruleset(api, {"view": 5, "demo": 60})
    events = [{"lead_id": f"lead-{n:03}", "event_type": "demo" if n % 4 == 0 else "view"} for n in range(120)]
    events.append({"event_type": "view", "aliases": [{"alias_kind": "email", "raw_value": "ada@example.com"}]})
    assert api.post("/ingest/batch", json={"events": events}).status_code == 202
    assert api.post("/leads", json={"id": "quiet-1"}).status_code == 201  # no activity yet
    settle(app, run_worker)
    sign_in(client, tenant.email, tenant.password)

    def lead_ids(query) -> tuple[list[str], str | None]:
        r = client.get("/app/leads", query_string=query)
        assert r.status_code == 200, text(r)[:500]
        found = re.findall(r'data-lead-id="([^"]+)"', text(r))
        after = re.search(r'href="[^"]*after=([^"&]+)[^"]*" rel="next"', text(r))
        return found, after[1] if after else None

    def every_page(query) -> list[str]:
        seen, after = [], None
        while True:
            ids, after = lead_ids({**query, "after": after} if after else query)
            seen += ids
            if after is None:
                return seen

    seen = every_page({})
    assert len(seen) == len(set(seen)) == 122
    hot = [f"lead-{n:03}" for n in range(120) if n % 4 == 0]
    assert seen[:30] == sorted(hot, reverse=True)  # hottest first, ties by id in the same direction
    newest, oldest = every_page({"sort": "-last_event_at"}), every_page({"sort": "last_event_at"})
    assert len(set(newest)) == 122 and newest[-1] == "quiet-1" and oldest == newest[::-1]  # never active: the oldest

    level = api.get("/engagement-levels").json["levels"][2]["id"]  # Hot
    assert lead_ids({"level": level})[0] == sorted(hot, reverse=True)
    assert lead_ids({"min_score": "6", "max_score": "60"})[0] == sorted(hot, reverse=True)
    assert lead_ids({"level": "none"})[0] == []
    ada, _ = lead_ids({"q": "Ada@"})
    assert len(ada) == 1 and ada[0].startswith("ld_")
    elevens = sorted((f"lead-11{n}" for n in range(10)), key=lambda i: (i in hot, i), reverse=True)
    assert lead_ids({"q": "lead-11"})[0] == elevens
    page = text(client.get("/app/leads"))
    counts = re.findall(r'<li data-level="[^"]+">.*?<span class="count">(\d+)</span>', page, re.S)
    assert [int(c) for c in counts] == [92, 0, 30, 0]  # Cold, Warm, Hot, Very Hot
    assert 'id="lead-total">122<' in page


def test_a_large_ous_level_counts_are_kept_briefly_and_a_level_edit_shows_at_once(app, api, tenant):
    """The levels bar of an OU of LARGE_OU_LEADS or more is counted once per LARGE_OU_SECONDS (here large_from=1 makes
    a small OU large); an edit of the level table is a new count at once."""
    from sqlalchemy import select

    from models.level_queries import level_counts
    from models.levels import EngagementLevel
    from webapp.app_state import db
    from webapp.services.level_counts import recent_level_counts

    ids = create_levels(api)
    ingest(api, "ada", "page_view")  # a new lead, score 0 until scored: counted where 0 falls (levels are score ranges)

    def counts():
        """(what the bar shows, what the OU holds)."""
        with app.app_context():
            levels = db().execute(select(EngagementLevel).where(EngagementLevel.unit_id == tenant.unit_id)).scalars()
            return recent_level_counts(tenant.unit_id, list(levels), large_from=1), level_counts(db(), tenant.unit_id)

    assert counts() == ({ids["Cold"]: 1}, {ids["Cold"]: 1})
    ingest(api, "bob", "page_view")
    assert counts() == ({ids["Cold"]: 1}, {ids["Cold"]: 2})  # the count kept, not the OU's leads read again
    cold = {"name": "Cold", "min_score": 0, "max_score": 20}  # every lead classified: both Cold
    assert api.put(f"/engagement-levels/{ids['Cold']}", json=cold).status_code == 200
    assert counts() == ({ids["Cold"]: 2}, {ids["Cold"]: 2})  # another level table: counted at once


def test_the_leads_filters_show_bad_input_inline(client, tenant, api):
    create_levels(api)
    sign_in(client, tenant.email, tenant.password)
    for query, field in (
        ({"min_score": "lots"}, "min_score"),
        ({"min_score": "10", "max_score": "5"}, "max_score"),
        ({"level": "Lukewarm"}, "level"),
        ({"after": "not-a-cursor"}, "after"),
        ({"after": "WzEsMiwzXQ"}, "after"),  # a well-formed cursor of another shape: [1,2,3]
        ({"sort": "name"}, "sort"),
        ({"q": "x" * 300}, "q"),
        ({"last_active": "1y"}, "last_active"),
    ):
        r = client.get("/app/leads", query_string=query)
        assert r.status_code == 400 and f'id="{field}-error"' in text(r) or field in ("sort", "last_active"), query
        assert r.status_code == 400 and 'role="alert"' in text(r), (query, r.status_code)


def test_a_lead_s_page_shows_its_score_level_events_aliases_and_metadata(client, app, api, tenant, run_worker):
    create_levels(api)
    published_ruleset(api, {"demo_request": 60, "page_view": 5})
    first = {"lead_id": "crm-9", "event_type": "page_view", "metadata": {"url": "/pricing", "channel": "web"}}
    assert api.post("/ingest", json=first).status_code == 202
    second = {
        "lead_id": "crm-9",
        "event_type": "demo_request",
        "aliases": [{"alias_kind": "email", "raw_value": "g@x.io"}],
    }
    assert api.post("/ingest", json=second).status_code == 202
    assert api.patch("/lead/crm-9/metadata", json={"metadata": {"company": "<b>Acme</b>"}}).status_code == 200
    settle(app, run_worker)
    sign_in(client, tenant.email, tenant.password)
    page = text(client.get("/app/leads/crm-9"))
    assert '<dd class="big" data-score>65</dd>' in page and "Hot" in page and "g@x.io" in page
    assert ">+60<" in page and ">+5<" in page and "&lt;b&gt;Acme&lt;/b&gt;" in page  # escaped, never markup
    for slot in ("score-explain", "score-history", "decay-forecast"):
        assert f'data-slot="{slot}"' in page


def test_the_integrations_page_shows_hubspot_and_slack_as_the_api_reports_them(settings, clean, tenant):
    token = "pat-na1-console-0123456789"
    with FakeHubSpot(tokens=[token]) as hubspot:
        app = create_app(dataclasses.replace(settings, hubspot_api_base=hubspot.url))
        client = app.test_client()
        api = Api(client, tenant)
        sign_in(client, tenant.email, tenant.password)
        page = text(client.get("/app/integrations"))
        assert "Not connected" in page and "Not configured" in page and "Connect HubSpot" in page
        create_levels(api)
        for typed, status, message in (
            ("", 400, "Missing data for required field"),
            ("short", 400, "Length must be between 10 and 500"),
            ("pat-na1-not-the-token-00", 400, "HubSpot rejected the access token"),
        ):
            r = form_post(client, "/app/integrations", "/app/integrations/hubspot", {"access_token": typed})
            assert r.status_code == status and message in shown(r) and 'id="access_token-error"' in text(r), typed
            assert typed not in text(r) or not typed
        r = form_post(client, "/app/integrations", "/app/integrations/hubspot", {"access_token": token})
        assert r.status_code == 303 and r.headers["Location"] == "/app/integrations?connected=hubspot"
        assert "HubSpot is connected" in text(client.get(r.headers["Location"]))
        assert api.post("/ingest", json={"lead_id": "crm-1", "event_type": "page_view"}).status_code == 202
        page = text(client.get("/app/integrations"))
        status = api.get("/integrations/hubspot").json
        assert "Connected" in page and f"<dd>{status['portal_id']}</dd>" in page and token not in page
        assert f'<div id="hubspot-pending"><dt>Waiting to sync</dt><dd>{status["pending"]}</dd>' in page
        assert "this organization unit&#39;s own" in page


def test_console_sign_ins_and_changes_are_in_the_audit_log(client, tenant):
    page = text(client.get("/app/sign-in"))
    bad = {"email": tenant.email, "password": "wrong password", "csrf_token": csrf_token(page)}
    assert client.post("/app/sign-in", data=bad).status_code == 401
    sign_in(client, tenant.email, tenant.password)
    assert form_post(client, "/app/levels", "/app/levels/reference", {}).status_code == 303
    owner = member_client(client, tenant)
    entries = client.get("/admin/audit-logs", query_string={"search": "/app/"}, headers=owner).json["items"]
    seen = {(e["method"], e["path"], e["status"], e["user_email"]) for e in entries}
    assert ("POST", "/app/sign-in", 303, tenant.email) in seen and (
        "POST",
        "/app/levels/reference",
        303,
        tenant.email,
    ) in seen
    assert all("password" not in str(e) for e in entries)


def test_the_level_history_shows_who_changed_what_and_reverts_after_a_confirm_step(client, api, tenant):
    sign_in(client, tenant.email, tenant.password)
    assert form_post(client, "/app/levels", "/app/levels/reference", {}).status_code == 303
    hot = next(lv for lv in api.get("/engagement-levels").json["levels"] if lv["name"] == "Hot")
    body = {"name": "Hot", "min_score": "50", "max_score": "69", "color": "#f97316"}
    assert form_post(client, "/app/levels", f"/app/levels/{hot['id']}", body).status_code == 303
    assert api.post("/engagement-levels", json={"name": "Frozen", "min_score": -10, "max_score": -1}).status_code == 201

    page = shown(client.get("/app/levels"))
    entries = api.get("/engagement-levels/history").json
    assert re.findall(r'<tr data-entry-id="([^"]+)">', page) == [e["id"] for e in entries]  # newest first
    rows = re.findall(r'<tr data-entry-id="[^"]+">(.*?)</tr>', page, re.S)
    assert "API key" in rows[0] and "Added a level" in rows[0] and "added Frozen -10–-1" in rows[0]
    assert tenant.email in rows[1] and "Edited a level" in rows[1] and "Hot 50–74 → 50–69" in rows[1]
    assert "current table" in rows[0] and "Revert" not in rows[0] and ">Revert<" in rows[1]

    # The confirm step shows both tables and changes nothing; the post restores the edit's table.
    edited = entries[1]["id"]
    confirm = client.get(f"/app/levels/history/{edited}/revert")
    assert confirm.status_code == 200 and "Revert the level table?" in text(confirm)
    assert "Frozen" in text(confirm) and len(api.get("/engagement-levels").json["levels"]) == 5
    r = form_post(client, f"/app/levels/history/{edited}/revert", f"/app/levels/history/{edited}/revert", {})
    assert r.status_code == 303 and r.headers["Location"] == "/app/levels?reverted=1"
    assert levels_of(api) == ["Cold", "Warm", "Hot", "Very Hot"]
    page = shown(client.get(r.headers["Location"]))
    assert "Reverted: the earlier table is back" in page and "removed Frozen -10–-1" in page
    assert api.get("/engagement-levels/history").json[0]["reverted_from"] == edited

    # A Viewer reads the history but sees no revert control, and is refused the confirm page and the post.
    add_member(client, tenant, "Viewer", "vera@example.com")
    viewer = app_client(client)
    sign_in(viewer, "vera@example.com", PASSWORD)
    page = text(viewer.get("/app/levels"))
    assert "Edited a level" in page and "/revert" not in page
    assert viewer.get(f"/app/levels/history/{edited}/revert").status_code == 403
    r = viewer.post(f"/app/levels/history/{edited}/revert", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 403 and 'data-error-code="forbidden"' in text(r)
    for bad in ("no-such-entry", hot["id"]):  # an id of something else is no entry either
        assert client.get(f"/app/levels/history/{bad}/revert").status_code == 404
    assert client.get("/app/levels", query_string={"history_page": "x"}).status_code == 200
    assert client.get("/app/levels", query_string={"history_page": "99999999999999999999"}).status_code == 200


def test_a_sign_in_held_back_after_failures_says_when_to_retry(client, tenant):
    token = csrf_token(client.get("/app/sign-in").get_data(as_text=True))
    answers = [
        client.post("/app/sign-in", data={"email": tenant.email, "password": "not it at all", "csrf_token": token})
        for _ in range(6)
    ]
    assert [r.status_code for r in answers] == [401] * 5 + [429]  # five failures, then a minute's hold
    assert int(answers[-1].headers["Retry-After"]) > 0
