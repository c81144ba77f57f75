"""The console in a real headless Chromium (Debian's chromium, driven by Playwright; `make test` installs both): the app
served over HTTP by a real server on PostgreSQL and Redis, one browser per test process, a new context per test."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from tests.auth_helpers import member_client
from tests.conftest import Api
from tests.helpers import REFERENCE_LEVELS, create_levels, ingest, published_ruleset, serving, settle
from webapp.resources import stream as stream_resource

CHROMIUM = os.environ.get("LEADPULSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000  # the longest a page is waited for (live updates come within a second or two)
SCREENSHOTS = os.environ.get("LEADPULSE_CONSOLE_SCREENSHOTS")  # a directory: the screenshot test writes its PNGs there


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def site(app, monkeypatch):
    monkeypatch.setattr(stream_resource, "HEARTBEAT_SECONDS", 1)  # a stream notices its browser left within a second
    with serving(app, record=False) as url:  # the console's pages are not the API's operations; a stream is endless
        yield url


@pytest.fixture
def page(browser, site):
    """A fresh browser context (its own cookies) at 1280 px; script errors and CSP refusals are collected."""
    context = browser.new_context(base_url=site, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.problems, page.site = problems, site
    yield page
    context.close()


def sign_in(page, client, tenant):
    """Signed in as the tenant's Owner without the form (test_signing_in_and_out drives that): the session a sign-in
    makes, in the cookies the form would set; then the Leads page."""
    token = client.post("/auth/login", json={"email": tenant.email, "password": tenant.password}).json["token"]
    url = page.site
    page.context.add_cookies(
        [
            {"name": "lp_session", "value": token, "url": url, "httpOnly": True, "secure": True, "sameSite": "Lax"},
            {
                "name": "activeOu",
                "value": tenant.unit_id,
                "url": url,
                "httpOnly": True,
                "secure": True,
                "sameSite": "Lax",
            },
        ]
    )
    page.goto("/app/leads")


def no_console_errors(page, allowed=()):
    """No script error and no CSP refusal (an inline script or style would be one)."""
    left = [p for p in page.problems if not any(a in p for a in allowed)]
    assert left == [], left


def fits_and_labelled(page, path: str, width: int) -> None:
    """The page shown needs no horizontal scrolling at this width, and every field has a label."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"{path} is wider than a {width} px screen by {overflow} px"
    unlabelled = page.evaluate(
        "Array.from(document.querySelectorAll('input:not([type=hidden]), select'))"
        ".filter(e => !(e.labels && e.labels.length)).map(e => e.name)"
    )
    assert unlabelled == [], f"{path}: fields without a label {unlabelled}"


def test_signing_in_and_out(page, tenant):
    page.goto("/app/leads")
    assert re.search(r"/app/sign-in\?next=", page.url)  # no session: sent to sign in, never an error
    page.get_by_label("Email").fill(tenant.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    assert "invalid email or password" in alert.inner_text()
    assert page.get_by_label("Email").input_value() == tenant.email  # kept for the next try
    page.get_by_label("Password").fill(tenant.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/app/leads$"))  # where it was going, in its only OU
    assert page.get_by_role("heading", name="Leads", exact=True).is_visible()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["lp_session"]["httpOnly"] and cookies["lp_session"]["sameSite"] == "Lax"
    assert page.evaluate("document.cookie").find("lp_session") == -1  # no script can read the session
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/app/sign-in$"))
    page.goto("/app/levels")
    assert "/app/sign-in" in page.url
    no_console_errors(page, allowed=("401",))


def test_creating_the_reference_levels_and_an_overlap_refused_inline(page, client, tenant):
    sign_in(page, client, tenant)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Levels").click()
    page.wait_for_url(re.compile(r"/app/levels$"))
    assert page.get_by_role("heading", name="No levels yet").is_visible()
    page.get_by_role("button", name="Create levels").click()
    rows = page.locator("table.levels tbody tr")
    rows.first.wait_for()
    assert [r.split("\t")[0].strip() for r in rows.all_inner_texts()] == [lv["name"] for lv in REFERENCE_LEVELS]
    assert page.get_by_role("status").inner_text().startswith("Created Cold, Warm, Hot, Very Hot")
    assert page.locator(".range-bar svg.bar rect").count() == 4

    page.get_by_label("Name").fill("Lukewarm")
    page.get_by_label("Min score").fill("10")
    page.get_by_label("Max score").fill("30")
    page.get_by_role("button", name="Add level").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "score ranges overlap: 'Cold' (0-24) and 'Lukewarm' (10-30)" in alert.inner_text()
    min_score = page.get_by_label("Min score")
    assert min_score.get_attribute("aria-invalid") == "true" and min_score.input_value() == "10"
    assert "overlap" in page.locator("#min_score-error").inner_text()
    assert rows.count() == 4  # nothing was added

    # The history: back to the table before Very Hot was added, after a confirm step.
    history = page.get_by_role("region", name="History")
    assert (
        history.locator("tbody tr").count() == 4 and "current table" in history.locator("tbody tr").first.inner_text()
    )
    history.get_by_role("link", name=re.compile("^Revert")).first.click()
    page.get_by_role("heading", name="Revert the level table?").wait_for()
    assert rows.count() == 0 and page.locator("svg.bar rect").count() == 3 + 4  # the restored table and the current
    page.get_by_role("button", name="Revert to this table").click()
    page.get_by_role("status").filter(has_text="Reverted").wait_for()
    assert [r.split("\t")[0].strip() for r in rows.all_inner_texts()] == ["Cold", "Warm", "Hot"]
    no_console_errors(page, allowed=("409", "400"))


def test_creating_a_ruleset_and_publishing_it_after_reading_its_preview(page, app, client, tenant, run_worker):
    api = Api(client, tenant)
    create_levels(api)
    for lead, kinds in (("crm-1", ["page_view", "demo_request"]), ("crm-2", ["page_view"])):
        for kind in kinds:
            ingest(api, lead, kind)
    settle(app, run_worker)
    sign_in(page, client, tenant)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Scoring").click()
    page.get_by_role("heading", name="No rulesets yet").wait_for()
    page.get_by_label("Name").fill("Engagement")
    page.get_by_label("Primary").check()
    page.get_by_role("button", name="Create ruleset").click()
    page.get_by_role("heading", name="Engagement", exact=True).wait_for()
    rows = page.locator("table.rules tbody tr")
    for event_type, weight in (("page_view", "5"), ("demo_request", "60"), ("page_view", "9")):
        page.get_by_label("Event type", exact=True).fill(event_type)
        page.get_by_label("Points", exact=True).fill(weight)
        page.get_by_role("button", name="Add rule").click()
        if weight != "9":
            rows.filter(has_text=event_type).wait_for()  # the page with the new rule is in
    alert = page.get_by_role("alert")  # the third: a second rule for page_view
    alert.wait_for()
    assert "already has a rule for event type 'page_view'" in alert.inner_text()
    assert page.get_by_label("Event type", exact=True).get_attribute("aria-invalid") == "true"
    assert rows.count() == 2

    page.get_by_role("link", name="Review and publish").click()
    page.get_by_role("heading", name="Publish Engagement?").wait_for()
    moves = {r.split("\t")[0]: r.split("\t")[1:] for r in page.locator("table.moves tbody tr").all_inner_texts()}
    assert moves["Hot"] == ["0", "1", "+1", "0"] and moves["Cold"] == ["2", "1", "0", "−1"]  # score 0 is Cold
    assert page.locator("table.movers tbody tr").first.inner_text().startswith("crm-1")
    assert api.get("/leads/crm-1").json["lead"]["score"] == 0  # nothing published yet
    page.get_by_role("button", name="Publish and rescore").click()
    page.get_by_role("status").filter(has_text="Published: 2 leads rescored.").wait_for()
    assert api.get("/leads/crm-1").json["lead"]["score"] == 65
    no_console_errors(page, allowed=("409",))


def test_events_sent_through_the_api_update_the_leads_table_live(page, app, client, tenant, run_worker):
    api = Api(client, tenant)
    create_levels(api)
    published_ruleset(api, {"demo_request": 60, "page_view": 5})
    ingest(api, "crm-1", "page_view")
    settle(app, run_worker)
    sign_in(page, client, tenant)
    page.locator(".live-status.on").wait_for()  # subscribed: nothing sent from now on is missed
    page.evaluate("window.notReloaded = true")
    assert page.locator("#lead-total").inner_text() == "1"

    sent = {"event_type": "demo_request", "aliases": [{"alias_kind": "email", "raw_value": "Ada@Example.com"}]}
    assert api.post("/ingest", json=sent).status_code == 202
    row = page.locator("tr", has_text="ada@example.com")
    row.wait_for()  # the new lead, on screen before it is scored
    settle(app, run_worker)
    page.locator("tr[data-score='60']", has_text="ada@example.com").wait_for()
    assert "Hot" in row.locator(".chip").inner_text()
    assert page.locator("#lead-total").inner_text() == "2"
    assert page.locator(".legend li[data-level] .count").all_inner_texts() == ["1", "0", "1", "0"]
    assert page.locator("tbody tr").first.get_attribute("data-lead-id") != "crm-1"  # hottest first
    assert page.evaluate("window.notReloaded") is True  # updated in place, not by a reload
    no_console_errors(page)


def test_opening_a_lead_and_another_ous_lead_is_a_404_page(page, app, client, tenant, other_tenant, run_worker):
    api = Api(client, tenant)
    create_levels(api)
    published_ruleset(api, {"demo_request": 60, "page_view": 5})
    ingest(api, "crm-7", "page_view", metadata={"url": "/pricing"})
    ingest(api, "crm-7", "demo_request", aliases=[{"alias_kind": "email", "raw_value": "grace@example.com"}])
    ingest(Api(client, other_tenant), "theirs-1", "page_view")
    settle(app, run_worker)
    sign_in(page, client, tenant)
    page.get_by_role("link", name="grace@example.com").click()
    page.wait_for_url(re.compile(r"/app/leads/crm-7$"))
    assert page.locator("[data-score]").inner_text() == "65"
    events = page.locator("table.events tbody tr").all_inner_texts()
    assert [e.split("\t")[1:3] for e in events] == [["demo_request", "+60"], ["page_view", "+5"]]
    assert "grace@example.com" in page.locator("section", has_text="Aliases").inner_text()
    for slot in ("score-explain", "score-history", "decay-forecast", "integrations"):
        assert page.locator(f"[data-slot='{slot}']").is_visible()
    why = page.get_by_role("region", name="Why this score")
    ledger = why.get_by_role("table", name=re.compile("^Engagement"))
    assert [r.split("\t") for r in ledger.locator("tbody tr").all_inner_texts()] == [
        ["demo_request", "1", "+60", "+60"],
        ["page_view", "1", "+5", "+5"],
    ]
    assert ledger.locator("tfoot").inner_text().split() == ["Score", "65"]
    assert page.get_by_role("img", name=re.compile("Score over the last 90 days: 0 then, 65 now")).is_visible()

    response = page.goto("/app/leads/theirs-1")
    assert response.status == 404
    assert page.get_by_role("heading", name="Not found").is_visible()
    assert "theirs" not in page.locator("main").inner_text()
    no_console_errors(page, allowed=("404",))


def test_the_pages_work_from_the_keyboard_and_fit_a_phone(page, app, client, tenant, run_worker):
    """Also what takes the screenshots of docs/console/ (LEADPULSE_CONSOLE_SCREENSHOTS=docs/console)."""
    owner = member_client(client, tenant)
    assert client.post("/admin/seed", headers=owner).status_code == 201  # levels, a ruleset, six leads' events
    api = Api(client, tenant)
    for n, kind in enumerate(("page_view", "email_open", "pricing_page_view", "email_click", "webinar_attended") * 3):
        sent = {"event_type": kind, "aliases": [{"alias_kind": "email", "raw_value": f"visitor{n % 9}@example.com"}]}
        assert api.post("/ingest", json=sent).status_code == 202
    assert api.post("/decays", json={"inactive_for": 14, "unit": "days", "decrease": 15}).status_code == 201
    settle(app, run_worker)
    ruleset = api.get("/rulesets").json[0]["ruleset_id"]
    sign_in(page, client, tenant)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to main content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.get_by_label("Email or lead id").focus()
    page.keyboard.type("grace@")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"q=grace%40"))
    assert page.locator("tbody tr").all_inner_texts()[0].startswith("grace@example.com")
    page.keyboard.press("Tab")  # from the search box on through the filters, in order
    assert page.evaluate("document.activeElement.id") == "level"
    pages = {"/app/leads": "leads", "/app/leads/seed-ada": "lead", "/app/levels": "levels"}
    pages |= {"/app/sources": "sources", "/app/credentials": "credentials", "/app/integrations": "integrations"}
    pages |= {"/app/scoring": "scoring", f"/app/scoring/rulesets/{ruleset}": "ruleset"}
    pages |= {f"/app/scoring/rulesets/{ruleset}/publish": "publish", "/app/scoring/decays": "decays"}
    for path, name in pages.items():
        for width, height in ((1280, 800), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            page.goto(path)
            fits_and_labelled(page, path, width)
            if SCREENSHOTS:
                page.screenshot(
                    path=f"{SCREENSHOTS}/{name}-{'phone' if width < 800 else 'desktop'}.png", full_page=True
                )
    no_console_errors(page)


def test_creating_a_webhook_source_and_copying_its_secret(page, client, tenant):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=page.site)
    sign_in(page, client, tenant)
    page.get_by_role("link", name="Sources & access").click()
    page.wait_for_url(re.compile(r"/app/sources$"))
    page.get_by_label("Name").fill("Site tracker")
    page.get_by_role("button", name="Add source").click()
    shown = page.locator("#new-secret")
    shown.wait_for()
    secret = shown.inner_text().strip()
    assert secret.startswith("whsec_")
    page.get_by_role("button", name="Copy signing secret").click()
    page.get_by_role("button", name="Copied signing secret").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Leads").click()
    page.wait_for_url(re.compile(r"/app/leads$"))  # left the page that showed it (else the click below races it)
    page.get_by_role("link", name="Sources & access").click()
    page.locator("tr", has_text="Site tracker").wait_for()
    assert secret not in page.content()  # shown once
    no_console_errors(page)


# Members and roles (webapp/console/member_pages.py), and trying unsaved rule edits (scoring_pages.try_changes).


def signed_in_context(browser, site, email: str, password: str):
    """Another person's browser: a context of its own, signed in through the form."""
    context = browser.new_context(base_url=site, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    other = context.new_page()
    other.problems = []
    other.on("pageerror", lambda exc: other.problems.append(str(exc)))
    other.goto("/app/sign-in")
    other.get_by_label("Email").fill(email)
    other.get_by_label("Password").fill(password)
    other.get_by_role("button", name="Sign in").click()
    other.wait_for_url(re.compile(r"/app/leads$"))
    return other


def test_an_owner_adds_a_viewer_who_then_sees_no_edit_controls(page, browser, client, tenant):
    published_ruleset(Api(client, tenant), {"page_view": 5})
    sign_in(page, client, tenant)
    page.get_by_role("link", name="Sources & access").click()
    page.get_by_role("navigation", name="Sources and access").get_by_role("link", name="Members").click()
    page.wait_for_url(re.compile(r"/app/members$"))
    form = page.get_by_role("region", name="Add a new member")
    form.get_by_label("First name").fill("Vera")
    form.get_by_label("Email").fill("vera@example.com")
    form.get_by_label("Password").fill("short")
    form.get_by_label("Role").select_option("Viewer")
    form.get_by_role("button", name="Add member").click()
    page.locator("#password-error").wait_for()  # the API's password rule, beside the field
    assert "at least 8" in page.locator("#password-error").inner_text()
    assert form.get_by_label("Password").input_value() == ""  # a refused password never comes back
    assert form.get_by_label("Email").input_value() == "vera@example.com"
    form.get_by_label("Password").fill("a long enough password")
    form.get_by_role("button", name="Add member").click()
    page.get_by_role("status").filter(has_text="Added vera@example.com").wait_for()
    vera_row = page.locator("tr", has_text="vera@example.com")
    assert vera_row.get_by_label("Role of vera@example.com").input_value() == "Viewer"

    # The last Owner cannot step down: the API's message beside the row's role.
    mine = page.get_by_label(f"Role of {tenant.email}")
    mine.select_option("Operator")
    page.get_by_role("button", name=f"Change role of {tenant.email}").click()
    page.get_by_role("alert").filter(has_text="at least one Owner").wait_for()
    assert page.get_by_label(f"Role of {tenant.email}").get_attribute("aria-invalid") == "true"

    vera = signed_in_context(browser, page.site, "vera@example.com", "a long enough password")
    try:
        vera.get_by_role("link", name="Sources & access").click()
        vera.wait_for_url(re.compile(r"/app/sources$"))
        assert vera.get_by_role("link", name="Members").count() == 0
        assert vera.get_by_role("button", name="Add source").count() == 0
        for path in ("/app/levels", "/app/scoring"):
            vera.goto(path)
            assert vera.locator("main form[method=post]").count() == 0, path  # no edit controls at all
        vera.get_by_role("link", name="Engagement").click()
        vera.get_by_role("heading", name="Engagement", exact=True).wait_for()
        assert vera.get_by_role("button", name="Preview these changes").count() == 0
        response = vera.goto("/app/members")
        assert response.status == 403 and vera.get_by_role("heading", name="Not allowed").is_visible()
        assert vera.problems == []
    finally:
        vera.context.close()
    no_console_errors(page, allowed=("400", "409"))


def test_previewing_an_unsaved_weight_change_shows_the_moves(page, app, client, tenant, run_worker):
    api = Api(client, tenant)
    create_levels(api)
    rs = published_ruleset(api, {"page_view": 5, "demo_request": 60})
    for lead, kinds in (("crm-1", ["page_view"] * 5), ("crm-2", ["page_view", "deal_won"]), ("crm-3", ["page_view"])):
        for kind in kinds:
            ingest(api, lead, kind)
    settle(app, run_worker)
    saved = api.get(f"/rulesets/{rs}/rules").json
    sign_in(page, client, tenant)
    page.goto(f"/app/scoring/rulesets/{rs}")
    trial = page.get_by_role("region", name="Try changes before saving them")
    trial.get_by_label("Points for page_view").fill("12")  # 5 page views: 25 (Warm) -> 60 (Hot)
    trial.get_by_role("button", name="Preview these changes").click()
    result = page.get_by_role("region", name="What publishing with these changes would do")
    result.wait_for()
    body = {"rules": [{"event_type": "page_view", "weight": 12}]}
    expected = api.post(f"/rulesets/{rs}/rescore-preview", json=body).json
    moves = {r.split("\t")[0]: r.split("\t")[1:] for r in result.locator("table.moves tbody tr").all_inner_texts()}
    assert moves == {
        m["level"]: [str(m["before"]), str(m["after"]), f"+{m['moved_in']}" if m["moved_in"] else "0"]
        + [f"−{m['moved_out']}" if m["moved_out"] else "0"]
        for m in expected["levels"]
    }
    assert moves["Hot"][2] == "+1" and moves["Warm"][3] == "−1"  # crm-1 would move up
    assert result.locator("table.movers tbody tr").first.inner_text().startswith("crm-1")
    assert trial.get_by_label("Points for page_view").input_value() == "12"  # still what was typed
    assert api.get(f"/rulesets/{rs}/rules").json == saved and api.get("/leads/crm-1").json["lead"]["score"] == 25

    # The same edit, backtested; a bad one is refused beside its row.
    trial.get_by_label("Event type or stage").fill("deal_won")
    trial.get_by_role("button", name="Backtest these changes").click()
    page.get_by_role("region", name="Backtest with these changes").wait_for()
    assert page.get_by_role("table", name=re.compile("^This ruleset with the changes")).is_visible()
    trial.get_by_label("New rule 1: event type").fill("webinar")
    trial.get_by_role("button", name="Preview these changes").click()
    page.locator("#weight-new0-error").wait_for()
    assert (
        "is required for an event type the ruleset has no rule for" in page.locator("#weight-new0-error").inner_text()
    )
    assert api.get(f"/rulesets/{rs}/rules").json == saved
    no_console_errors(page, allowed=("400",))


def test_the_members_page_and_trying_changes_work_from_the_keyboard_and_fit_a_phone(
    page, app, client, tenant, run_worker
):
    """Also the screenshots of the Members page and of a trial (LEADPULSE_CONSOLE_SCREENSHOTS=docs/console)."""
    owner = member_client(client, tenant)
    assert client.post("/admin/seed", headers=owner).status_code == 201
    for first, role in (("Olga", "Operator"), ("Vera", "Viewer"), ("Oscar", "Owner")):
        body = {"first_name": first, "last_name": "Example", "email": f"{first.lower()}@example.com", "role": role}
        r = client.post("/org-members", json={**body, "password": "a long enough password"}, headers=owner)
        assert r.status_code == 201, r.json
    settle(app, run_worker)
    ruleset = Api(client, tenant).get("/rulesets").json[0]["ruleset_id"]
    sign_in(page, client, tenant)
    page.goto("/app/members")
    page.get_by_label("Role of vera@example.com").focus()  # the row's controls, in order, from the keyboard
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Change role of vera@example.com"
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("ArrowDown")  # Viewer, then Operator
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.get_by_role("status").filter(has_text="vera@example.com is now Operator").wait_for()
    for path, name in (("/app/members", "members"), (f"/app/scoring/rulesets/{ruleset}", "ruleset-try")):
        for width, height in ((1280, 800), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            page.goto(path)
            if name == "ruleset-try":
                trial = page.get_by_role("region", name="Try changes before saving them")
                trial.locator("input[type=number]").first.fill("40")
                trial.get_by_role("button", name="Preview these changes").click()
                page.get_by_role("region", name="What publishing with these changes would do").wait_for()
            fits_and_labelled(page, path, width)
            if SCREENSHOTS:
                shot = f"{SCREENSHOTS}/{name}-{'phone' if width < 800 else 'desktop'}.png"
                if name == "ruleset-try":  # the try-changes card and its answer, not the whole ruleset page again
                    page.get_by_role("region", name="Try changes before saving them").screenshot(path=shot)
                else:
                    page.screenshot(path=shot, full_page=True)
    no_console_errors(page)


# ----- Integrations: HubSpot and Slack connected from the page (the fakes over real HTTP)

SLACK_APP = ("1111.2222", "test-client-secret-0123456789")
HUBSPOT_TOKEN = "pat-na1-browser-0123456789"


@pytest.fixture
def integrations_site(settings, clean, browser, monkeypatch):
    """(page, app, fake HubSpot, fake Slack): the app on both fakes, served over HTTP, and a fresh context at 1280 px."""
    import dataclasses

    from tests.fakes import FakeHubSpot, FakeSlack
    from webapp import create_app

    monkeypatch.setattr(stream_resource, "HEARTBEAT_SECONDS", 1)
    with (
        FakeHubSpot(tokens=[HUBSPOT_TOKEN]) as hubspot,
        FakeSlack(client_id=SLACK_APP[0], client_secret=SLACK_APP[1], team_name="Acme") as slack,
    ):
        app = create_app(dataclasses.replace(settings, hubspot_api_base=hubspot.url, slack_api_base=slack.base_url))
        with serving(app, record=False) as url:
            context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 800})
            context.set_default_timeout(WAIT_MS)
            page = context.new_page()
            page.problems, page.site = [], url
            page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda exc: page.problems.append(str(exc)))
            yield page, app, hubspot, slack
            context.close()


def test_connecting_hubspot_and_slack_from_the_integrations_page_at_desktop_and_phone(integrations_site, tenant):
    """Also what takes the Integrations screenshots of docs/console/, connected (after the keyboard test's, so these
    are the ones kept)."""
    page, app, hubspot, slack = integrations_site
    client = app.test_client()
    api = Api(client, tenant)
    create_levels(api)
    leads = slack.add_channel("leads")
    slack.add_channel("general")
    grace = slack.add_user("grace", real_name="Grace Hopper")
    sign_in(page, client, tenant)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Integrations").click()
    page.wait_for_url(re.compile(r"/app/integrations$"))

    hubspot_card = page.locator("[data-integration=hubspot]")
    page.get_by_label("Private-app access token").fill("pat-na1-not-the-token-00")
    page.get_by_role("button", name="Connect HubSpot").click()
    assert "rejected by HubSpot" in page.locator("#access_token-error").inner_text()
    assert "HubSpot rejected the access token" in page.get_by_role("alert").inner_text()
    page.get_by_label("Private-app access token").fill(HUBSPOT_TOKEN)
    page.get_by_role("button", name="Connect HubSpot").click()
    page.get_by_role("status").filter(has_text="HubSpot is connected").wait_for()
    assert "Connected" in hubspot_card.locator("h2").inner_text()

    page.get_by_label("Client ID").fill(SLACK_APP[0])
    page.get_by_label("Client secret").fill(SLACK_APP[1])
    page.get_by_role("button", name="Set the Slack app").click()
    page.get_by_role("status").filter(has_text="Slack app is set").wait_for()
    page.get_by_role("link", name="Add to Slack").click()  # to the fake Slack's consent page, which approves at once
    page.wait_for_url(re.compile(r"/app/integrations\?slack=connected$"))
    assert "Slack is installed" in page.get_by_role("status").inner_text()
    assert "Installed Team" in page.locator("[data-integration=slack]").inner_text()

    page.get_by_role("link", name="Pick where alerts go").click()
    page.get_by_role("heading", name="Where Slack alerts go").wait_for()
    page.get_by_label("Find a channel or person").fill("grace")
    page.get_by_role("button", name="Find").click()
    page.get_by_text("0 channels and 1 people").wait_for()
    page.get_by_label("Channel or person", exact=True).select_option(f"user:{grace}")
    page.get_by_role("button", name="Send a test message").click()  # to the person picked, before saving anything
    page.get_by_role("status").filter(has_text="Test message sent").wait_for()
    assert slack.messages[-1]["channel"] == "D" + grace[1:]
    page.get_by_role("link", name="Show all").click()
    page.get_by_text("2 channels and 2 people").wait_for()
    page.get_by_label("Channel or person", exact=True).select_option(label="#leads")
    page.get_by_role("button", name="Send alerts here").click()
    page.get_by_role("status").filter(has_text="Alerts now go where you picked.").wait_for()
    assert page.locator("#slack-target dd").inner_text() == f"channel {leads}"

    page.get_by_label("Message").fill("Hello from the console")
    page.get_by_role("button", name="Send a test message").click()
    page.get_by_role("status").filter(has_text="Test message sent").wait_for()
    assert slack.messages[-1]["channel"] == leads and slack.messages[-1]["text"] == "Hello from the console"
    slack.fail_channel(leads, "is_archived")
    page.get_by_role("button", name="Send a test message").click()
    assert "Slack refused the target: is_archived" in page.get_by_role("alert").inner_text()

    pages = {
        "/app/integrations": "integrations",
        "/app/integrations/slack/target": "slack-target",
        "/app/integrations/hubspot/failures": None,
        "/app/integrations/slack/disconnect": None,
    }
    for path, name in pages.items():
        for width, height in ((1280, 800), (390, 844)):
            page.set_viewport_size({"width": width, "height": height})
            page.goto(path)
            fits_and_labelled(page, path, width)
            if SCREENSHOTS and name:
                page.screenshot(
                    path=f"{SCREENSHOTS}/{name}-{'phone' if width < 800 else 'desktop'}.png", full_page=True
                )
    page.goto("/app/integrations")
    page.get_by_role("link", name="Disconnect Slack").click()
    page.get_by_role("heading", name="Disconnect Slack?").wait_for()
    page.get_by_role("button", name="Disconnect Slack").click()
    page.get_by_role("status").filter(has_text="Slack is disconnected").wait_for()
    assert page.get_by_role("link", name="Add to Slack").is_visible()
    no_console_errors(page, allowed=("400",))
