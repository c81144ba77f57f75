"""The console's Scoring pages on the server: rulesets, rules and decay rules through the API's own rules (their
refusals inline, never a 500), publishing only after the rescore preview (the API's own numbers), the backtest report,
and a Viewer shown no edit controls and refused."""

from __future__ import annotations

import html
import re

from tests.conftest import Api
from tests.console_helpers import csrf_token, form_post, sign_in
from tests.helpers import create_levels, published_ruleset, settle
from tests.test_console import PASSWORD, add_member, app_client

RULE = {"active": ["false", "true"]}  # a ticked box posts the hidden "false", then "true"


def text(r) -> str:
    return r.get_data(as_text=True)


def shown(r) -> str:
    return html.unescape(text(r))


def inline(r, status: int, field: str, message: str) -> None:
    """The form came back with the API's message beside the field it names."""
    page = shown(r)
    assert r.status_code == status, (r.status_code, page[:800])
    assert message in page and f'id="{field}-error"' in page, (field, message, page[:3000])
    assert "Traceback" not in page


def rulesets_of(api) -> dict[str, dict]:
    return {rs["name"]: rs for rs in api.get("/rulesets").json}


def test_rulesets_and_rules_are_made_through_the_api_s_rules_and_published_after_the_preview(
    client, app, api, tenant, run_worker
):
    create_levels(api)
    for n in range(6):
        kinds = ["page_view"] * n + (["demo_request"] if n % 2 else [])
        for kind in kinds:
            assert api.post("/ingest", json={"lead_id": f"lead-{n}", "event_type": kind}).status_code == 202
    settle(app, run_worker)
    sign_in(client, tenant.email, tenant.password)
    assert "No rulesets yet" in text(client.get("/app/scoring"))

    # A ruleset: its bad input inline, then made.
    for body, status, field, message in (
        ({"name": ""}, 400, "name", "Missing data for required field"),
        ({"name": "X" * 101}, 400, "name", "Length must be between 1 and 100"),
        ({"name": "X", "start_date": "soon"}, 400, "start_date", "Not a valid datetime"),
        (
            {"name": "X", "start_date": "2030-01-02T00:00", "end_date": "2030-01-01T00:00"},
            400,
            "end_date",
            "end_date must not be before start_date",
        ),
    ):
        inline(form_post(client, "/app/scoring", "/app/scoring/rulesets", body), status, field, message)
    body = {"name": "Engagement", "is_primary": ["false", "true"], "active": ["false", "true"]}
    r = form_post(client, "/app/scoring", "/app/scoring/rulesets", body)
    rs = rulesets_of(api)["Engagement"]
    assert r.status_code == 303 and r.headers["Location"] == f"/app/scoring/rulesets/{rs['ruleset_id']}?created=1"
    assert rs["is_primary"] and rs["active"] and rs["status"] == "draft"
    inline(form_post(client, "/app/scoring", "/app/scoring/rulesets", {"name": "engagement"}), 409, "name", "exists")
    here = f"/app/scoring/rulesets/{rs['ruleset_id']}"
    page = text(client.get(here))
    assert "A draft: it scores nothing until it is published." in page and "No rules yet" in page

    # Rules: the API's refusals beside their fields; then three rules.
    add = f"{here}/rules"
    for body, status, field, message in (
        ({"weight": "5"}, 400, "event_type", "Missing data for required field"),
        ({"event_type": "page_view", "weight": "lots"}, 400, "weight", "Not a valid integer"),
        ({"event_type": "page_view", "weight": "1000000"}, 400, "weight", "Must be greater than or equal to"),
        ({"event_type": "page view!", "weight": "5"}, 400, "event_type", "event_type"),
        ({"event_type": "x", "weight": "5", "start_at": "2030-01-02T00:00", "end_at": "2030-01-01T00:00"}, 400,
         "end_at", "end_at must not be before start_at"),
    ):  # fmt: skip
        inline(form_post(client, here, add, {**RULE, **body}), status, field, message)
    for event_type, weight in (("page_view", "5"), ("demo_request", "40"), ("unsubscribe", "-20")):
        r = form_post(client, here, add, {**RULE, "event_type": event_type, "weight": weight})
        assert r.status_code == 303 and r.headers["Location"] == f"{here}?saved=rule", shown(r)[:500]
    dup = form_post(client, here, add, {**RULE, "event_type": "page_view", "weight": "1"})
    inline(dup, 409, "event_type", "ruleset already has a rule for event type 'page_view'")
    assert 'value="page_view"' in text(dup) and 'value="1"' in text(dup)  # what was typed comes back
    rules = {r["event_type"]: r for r in api.get(f"/rulesets/{rs['ruleset_id']}/rules").json}
    assert {k: v["weight"] for k, v in rules.items()} == {"page_view": 5, "demo_request": 40, "unsubscribe": -20}

    # Publishing: the confirm page shows the API's own preview; nothing changes until the post.
    preview = api.post(f"/rulesets/{rs['ruleset_id']}/rescore-preview").json
    confirm = client.get(f"{here}/publish")
    page = shown(confirm)
    assert confirm.status_code == 200 and "Publish Engagement?" in page and "Publish and rescore" in page
    assert f"<dd data-score-changes>{preview['score_changes']}</dd>" in page
    moves = re.findall(r'<tr data-level="([^"]+)"><td>[^<]+</td>((?:<td class="num">[^<]+</td>){4})</tr>', page)
    expected = [
        (m["level"], "".join(f'<td class="num">{v}</td>' for v in (m["before"], m["after"], *signed(m))))
        for m in preview["levels"]
    ]
    assert moves == expected and len(expected) == 5  # four levels and Unclassified
    movers = re.findall(r'<a href="/app/leads/([^"]+)">', page.split("Largest movers")[1])
    assert movers == [m["lead_id"] for m in preview["top_movers"]] and movers[0] == "lead-5"
    assert api.get("/leads/lead-5").json["lead"]["score"] == 0
    r = form_post(client, f"{here}/publish", f"{here}/publish", {})
    assert r.status_code == 303 and r.headers["Location"] == f"{here}?published=5"
    assert "Published: 5 leads rescored." in text(client.get(r.headers["Location"]))
    assert api.get("/leads/lead-5").json["lead"]["score"] == 65  # 5 page views and a demo request
    assert api.get("/rulesets/history").json[0]["who"]["name"] == tenant.email

    # An edit waits for the next publish, and says so.
    edit = f"/app/scoring/rules/{rules['page_view']['rule_id']}"
    assert "Edit the rule for page_view" in text(client.get(f"{edit}/edit"))
    inline(form_post(client, f"{edit}/edit", edit, {**RULE, "weight": "x"}), 400, "weight", "Not a valid integer")
    r = form_post(client, f"{edit}/edit", edit, {"weight": "7", "active": ["false"]})
    assert r.status_code == 303
    saved = next(r for r in api.get(f"/rulesets/{rs['ruleset_id']}/rules").json if r["event_type"] == "page_view")
    assert (saved["weight"], saved["active"]) == (7, False)
    page = shown(client.get(here))
    assert "The rules below changed since" in page and "published +5" in page
    assert "unpublished changes" in text(client.get("/app/scoring"))
    r = form_post(client, here, f"/app/scoring/rules/{rules['unsubscribe']['rule_id']}/delete", {})
    assert r.status_code == 303 and len(api.get(f"/rulesets/{rs['ruleset_id']}/rules").json) == 2

    # Settings: unticking Primary through the form, a clash named inline; unpublishing; deleting.
    other = published_ruleset(api, {"page_view": 1}, name="Other", primary=False)
    inline(form_post(client, here, here, {"name": "other"}), 409, "name", "a ruleset named 'other' already exists")
    assert rulesets_of(api)["Engagement"]["is_primary"]  # the refused form changed nothing
    r = form_post(client, here, here, {"name": "Engagement v2", "is_primary": "false", "active": ["false", "true"]})
    assert r.status_code == 303 and not rulesets_of(api)["Engagement v2"]["is_primary"]
    r = form_post(client, here, f"{here}/unpublish", {})
    assert r.status_code == 303 and rulesets_of(api)["Engagement v2"]["status"] == "draft"
    r = form_post(client, f"/app/scoring/rulesets/{other}", f"/app/scoring/rulesets/{other}/delete", {})
    assert r.status_code == 303 and r.headers["Location"] == "/app/scoring?deleted=Other"
    assert set(rulesets_of(api)) == {"Engagement v2"}


def signed(move: dict) -> tuple[str, str]:
    return (f"+{move['moved_in']}" if move["moved_in"] else "0", f"−{move['moved_out']}" if move["moved_out"] else "0")


def test_a_ruleset_that_is_not_the_primary_previews_its_own_scores(client, app, api, tenant, run_worker):
    create_levels(api)
    published_ruleset(api, {"page_view": 5})
    draft = api.post("/rulesets", json={"name": "Trial"}).json["ruleset_id"]
    assert api.post("/rules", json={"ruleset_id": draft, "event_type": "page_view", "weight": 3}).status_code == 201
    assert api.post("/ingest", json={"lead_id": "a", "event_type": "page_view"}).status_code == 202
    settle(app, run_worker)
    sign_in(client, tenant.email, tenant.password)
    page = shown(client.get(f"/app/scoring/rulesets/{draft}/publish"))
    assert "is not the primary ruleset, so publishing it moves no lead between levels" in page
    assert "<dd data-level-changes>—</dd>" in page and ">+3<" in page


def test_the_backtest_form_shows_its_report_and_its_bad_input_inline(client, app, api, tenant, run_worker):
    create_levels(api)
    rs = published_ruleset(api, {"demo_request": 60, "page_view": 5})
    for lead, kinds in (("won", ["demo_request", "deal_won"]), ("lost", ["page_view"])):
        for kind in kinds:
            assert api.post("/ingest", json={"lead_id": lead, "event_type": kind}).status_code == 202
    settle(app, run_worker)
    sign_in(client, tenant.email, tenant.password)
    here, run = f"/app/scoring/rulesets/{rs}", f"/app/scoring/rulesets/{rs}/backtest"
    for body, field, message in (
        ({"outcome_kind": "event_type", "outcome": ""}, "outcome", "event_type"),
        ({"outcome_kind": "event_type", "outcome": "deal won!"}, "outcome", "event_type"),
        ({"outcome_kind": "lifecycle_stage", "outcome": "a/b"}, "outcome", "String does not match"),
        ({"outcome_kind": "nothing", "outcome": "x"}, "outcome_kind", "Choose what counts as the outcome"),
        ({"outcome_kind": "event_type", "outcome": "deal_won", "since": "2999-01-01T00:00"}, "since", "until"),
        ({"outcome_kind": "event_type", "outcome": "deal_won", "until": "yesterday"}, "until", "Not a valid"),
    ):
        inline(form_post(client, here, run, body), 400, field, message)
    r = form_post(client, here, run, {"outcome_kind": "event_type", "outcome": "deal_won"})
    page = shown(r)
    expected = api.post(f"/rulesets/{rs}/backtest", json={"outcome": {"event_type": "deal_won"}}).json
    assert r.status_code == 200 and "Backtest report: deal_won" in page
    assert f"<dd data-reached>{expected['reached_outcome']}</dd>" in page and expected["reached_outcome"] == 1
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td>", page)
    draft = [(v["level"], str(v["leads"]), str(v["reached_outcome"])) for v in expected["versions"]["draft"]["levels"]]
    assert rows[: len(draft)] == draft and ("Hot", "1", "1") in rows
    assert 'value="deal_won"' in text(r)  # the form keeps what was asked


def test_decay_rules_are_added_edited_and_deleted_with_their_refusals_inline(client, api, tenant):
    sign_in(client, tenant.email, tenant.password)
    assert "No decay rules" in text(client.get("/app/scoring/decays"))
    for body, field, message in (
        ({"unit": "days", "decrease": "5"}, "inactive_for", "Missing data for required field"),
        ({"inactive_for": "0", "unit": "days", "decrease": "5"}, "inactive_for", "greater than or equal to 1"),
        ({"inactive_for": "30", "unit": "months", "decrease": "5"}, "unit", "Must be one of"),
        ({"inactive_for": "30", "unit": "days", "decrease": "lots"}, "decrease", "Not a valid integer"),
    ):
        inline(form_post(client, "/app/scoring/decays", "/app/scoring/decays", body), 400, field, message)
    body = {"inactive_for": "30", "unit": "days", "decrease": "10"}
    assert form_post(client, "/app/scoring/decays", "/app/scoring/decays", body).status_code == 303
    [decay] = api.get("/decays").json
    assert "−10 points after 30 days without activity" in shown(client.get("/app/scoring/decays"))
    edit = f"/app/scoring/decays/{decay['decay_id']}"
    inline(form_post(client, f"{edit}/edit", edit, {"decrease": "0"}), 400, "decrease", "greater than or equal to 1")
    assert form_post(client, f"{edit}/edit", edit, {**body, "unit": "weeks"}).status_code == 303
    assert api.get("/decays").json[0]["unit"] == "weeks"
    assert form_post(client, "/app/scoring/decays", f"{edit}/delete", {}).status_code == 303
    assert api.get("/decays").json == []


def test_a_viewer_sees_scoring_without_edit_controls_and_is_refused(client, app, api, tenant, other_tenant):
    rs = published_ruleset(api, {"page_view": 5})
    rule = api.get(f"/rulesets/{rs}/rules").json[0]["rule_id"]
    decay = api.post("/decays", json={"inactive_for": 7, "unit": "days", "decrease": 5}).json["decay_id"]
    add_member(client, tenant, "Viewer", "vera@example.com")
    viewer = app_client(client)
    sign_in(viewer, "vera@example.com", PASSWORD)
    for path in ("/app/scoring", f"/app/scoring/rulesets/{rs}", "/app/scoring/decays"):
        page = text(viewer.get(path))
        assert "page_view" in page or "Engagement" in page or "5 points" in page
        for control in ('<form method="post" action="/app/scoring', "Review and publish", "Run backtest", ">Edit<"):
            assert control not in page, (path, control)
    token = csrf_token(page)
    assert viewer.get(f"/app/scoring/rulesets/{rs}/publish").status_code == 403
    for path in (
        "/app/scoring/rulesets",
        f"/app/scoring/rulesets/{rs}",
        f"/app/scoring/rulesets/{rs}/rules",
        f"/app/scoring/rulesets/{rs}/publish",
        f"/app/scoring/rulesets/{rs}/unpublish",
        f"/app/scoring/rulesets/{rs}/backtest",
        f"/app/scoring/rulesets/{rs}/delete",
        f"/app/scoring/rules/{rule}",
        f"/app/scoring/rules/{rule}/delete",
        "/app/scoring/decays",
        f"/app/scoring/decays/{decay}",
        f"/app/scoring/decays/{decay}/delete",
    ):
        r = viewer.post(path, data={"csrf_token": token, "name": "x", "event_type": "x", "weight": "1"})
        assert r.status_code == 403 and 'data-error-code="forbidden"' in text(r), path
    assert api.get(f"/rulesets/{rs}").json["status"] == "published" and len(api.get("/decays").json) == 1

    # Another OU's ruleset, rule and decay rule are the 404 page.
    theirs = Api(client, other_tenant)
    their_rs = published_ruleset(theirs, {"page_view": 5})
    their_rule = theirs.get(f"/rulesets/{their_rs}/rules").json[0]["rule_id"]
    their_decay = theirs.post("/decays", json={"inactive_for": 7, "unit": "days", "decrease": 5}).json["decay_id"]
    sign_in(client, tenant.email, tenant.password)
    for path in (
        f"/app/scoring/rulesets/{their_rs}",
        f"/app/scoring/rulesets/{their_rs}/publish",
        f"/app/scoring/rules/{their_rule}/edit",
        f"/app/scoring/decays/{their_decay}/edit",
    ):
        r = client.get(path)
        assert r.status_code == 404 and 'data-error-code="not_found"' in text(r), path


def try_form(rules: list[dict], **typed) -> dict:
    """The try-changes form as the page fills it (each saved rule's points), with typed changes laid over it."""
    return {**{f"weight-{r['rule_id']}": str(r["weight"]) for r in rules}, **typed}


def test_unsaved_rule_edits_are_previewed_and_backtested_as_the_api_s_bodies_carry_them(
    client, app, api, tenant, run_worker
):
    create_levels(api)
    rs = published_ruleset(api, {"page_view": 5, "demo_request": 60})
    for lead, kinds in (("a", ["page_view"] * 6), ("b", ["demo_request", "deal_won"]), ("c", ["page_view"])):
        for kind in kinds:
            assert api.post("/ingest", json={"lead_id": lead, "event_type": kind}).status_code == 202
    settle(app, run_worker)
    sign_in(client, tenant.email, tenant.password)
    here, run = f"/app/scoring/rulesets/{rs}", f"/app/scoring/rulesets/{rs}/try"
    rules = {r["event_type"]: r for r in api.get(f"/rulesets/{rs}/rules").json}
    saved = api.get(f"/rulesets/{rs}/rules").json
    page = text(client.get(here))
    assert "Try changes before saving them" in page and f'id="weight-{rules["page_view"]["rule_id"]}"' in page

    # page_view 5 -> 10, demo_request left out, a new rule: the same body the API takes.
    typed = try_form(
        list(rules.values()),
        **{
            f"weight-{rules['page_view']['rule_id']}": "10",
            f"out-{rules['demo_request']['rule_id']}": "true",
            "type-new0": "webinar",
            "weight-new0": "25",
        },
    )
    body = {
        "rules": [
            {"event_type": "page_view", "weight": 10},
            {"event_type": "demo_request", "active": False},
            {"event_type": "webinar", "weight": 25},
        ]
    }
    expected = api.post(f"/rulesets/{rs}/rescore-preview", json=body).json
    r = form_post(client, here, run, {**typed, "run": "preview"})
    page = shown(r)
    assert r.status_code == 200 and "What publishing with these changes would do" in page
    assert f"<dd data-score-changes>{expected['score_changes']}</dd>" in page and expected["score_changes"] == 3
    assert f"<dd data-level-changes>{expected['level_changes']}</dd>" in page and expected["level_changes"] >= 2
    moves = re.findall(r'<tr data-level="([^"]+)"><td>[^<]+</td>((?:<td class="num">[^<]+</td>){4})</tr>', page)
    assert moves == [
        (m["level"], "".join(f'<td class="num">{v}</td>' for v in (m["before"], m["after"], *signed(m))))
        for m in expected["levels"]
    ]
    movers = re.findall(r'<a href="/app/leads/([^"]+)">', page.split("Largest movers")[1])
    assert movers == [m["lead_id"] for m in expected["top_movers"]] and movers[0] == "b"  # -60
    assert "<code>page_view</code>: +5 → +10 points" in page and "<code>demo_request</code>: left out" in page
    assert "<code>webinar</code>: +25 points (new)" in page
    assert 'value="webinar"' in page and 'value="10"' in page  # the form keeps what was typed
    assert api.get(f"/rulesets/{rs}/rules").json == saved  # nothing was saved
    assert api.get("/leads/a").json["lead"]["score"] == 30

    # The backtest of the same edits is the API's.
    expected = api.post(f"/rulesets/{rs}/backtest", json={**body, "outcome": {"event_type": "deal_won"}}).json
    r = form_post(client, here, run, {**typed, "run": "backtest", "outcome_kind": "event_type", "outcome": "deal_won"})
    page = shown(r)
    assert r.status_code == 200 and "Backtest with these changes" in page and "This ruleset with the changes" in page
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">(\d+)</td><td class=\"num\">(\d+)</td>", page)
    draft = [(v["level"], str(v["leads"]), str(v["reached_outcome"])) for v in expected["versions"]["draft"]["levels"]]
    assert rows[: len(draft)] == draft
    assert api.get(f"/rulesets/{rs}/rules").json == saved

    # No change at all: the saved rules, said so.
    r = form_post(client, here, run, {**try_form(list(rules.values())), "run": "preview"})
    assert r.status_code == 200 and "No changes: these are the saved rules." in shown(r)
    r = form_post(client, here, run, {**try_form(list(rules.values())), "type-new0": "page_view", "run": "preview"})
    assert r.status_code == 200 and "<code>page_view</code>: unchanged" in shown(r)  # named, but no points given


def test_bad_unsaved_edits_are_shown_beside_their_row_with_the_api_s_message(client, api, tenant):
    rs = published_ruleset(api, {"page_view": 5})
    [rule] = api.get(f"/rulesets/{rs}/rules").json
    sign_in(client, tenant.email, tenant.password)
    here, run = f"/app/scoring/rulesets/{rs}", f"/app/scoring/rulesets/{rs}/try"
    weight = f"weight-{rule['rule_id']}"
    for typed, field, message in (
        ({weight: "lots"}, weight, "Not a valid integer"),
        ({weight: ""}, weight, "Not a valid integer"),
        ({weight: "100001"}, weight, "less than or equal to 100000"),
        ({"type-new1": "webinar"}, "weight-new1", "is required for an event type the ruleset has no rule for"),
        ({"weight-new0": "3"}, "type-new0", "event_type"),
        ({"type-new0": "bad type!", "weight-new0": "3"}, "type-new0", "must be letters, digits"),
        ({weight: "6", "type-new2": "page_view", "weight-new2": "7"}, "type-new2", "'page_view' is edited twice"),
        ({"type-new0": "webinar", "weight-new0": "2.5"}, "weight-new0", "Not a valid integer"),
    ):
        r = form_post(client, here, run, {**try_form([rule], **typed), "run": "preview"})
        inline(r, 400, field, message)
        assert 'aria-invalid="true"' in shown(r)
    for typed, field, message in (
        ({"outcome_kind": "event_type", "outcome": ""}, "outcome", "event_type"),
        ({"outcome_kind": "nothing", "outcome": "x"}, "outcome_kind", "Choose what counts as the outcome"),
        ({"outcome_kind": "event_type", "outcome": "deal_won", "until": "yesterday"}, "until", "Not a valid"),
        ({"outcome_kind": "event_type", "outcome": "deal_won", weight: "x"}, weight, "Not a valid integer"),
    ):
        inline(form_post(client, here, run, {**try_form([rule]), **typed, "run": "backtest"}), 400, field, message)
    assert api.get(f"/rulesets/{rs}/rules").json == [rule]


def test_trying_changes_is_refused_to_a_viewer_needs_csrf_and_another_ou_s_ruleset_is_a_404(
    client, api, tenant, other_tenant
):
    rs = published_ruleset(api, {"page_view": 5})
    add_member(client, tenant, "Viewer", "vera@example.com")
    viewer = app_client(client)
    sign_in(viewer, "vera@example.com", PASSWORD)
    page = text(viewer.get(f"/app/scoring/rulesets/{rs}"))
    assert "Try changes" not in page and "Preview these changes" not in page
    r = viewer.post(f"/app/scoring/rulesets/{rs}/try", data={"csrf_token": csrf_token(page), "run": "preview"})
    assert r.status_code == 403 and 'data-error-code="forbidden"' in text(r)
    sign_in(client, tenant.email, tenant.password)
    r = client.post(f"/app/scoring/rulesets/{rs}/try", data={"run": "preview"})
    assert r.status_code == 403 and 'data-error-code="csrf_failed"' in text(r)
    theirs = published_ruleset(Api(client, other_tenant), {"page_view": 5})
    here = f"/app/scoring/rulesets/{rs}"
    r = form_post(client, here, f"/app/scoring/rulesets/{theirs}/try", {"run": "preview", "weight-x": "1"})
    assert r.status_code == 404 and 'data-error-code="not_found"' in text(r)
