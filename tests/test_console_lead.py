"""A lead's page in the console: why it scores what it does (the ledger the API answers, its parts summing to the
score), its score history drawn as SVG over the level bands, the decay forecast, its HubSpot contact and Slack alerts,
all read through the functions GET /lead/{id}/score-explain, /score-history and /lead/{id} use."""

from __future__ import annotations

import dataclasses
import html
import re
from datetime import UTC, datetime, timedelta

from tests.auth_helpers import member_client
from tests.conftest import Api
from tests.console_helpers import sign_in
from tests.fakes import FakeHubSpot, FakeSlack
from tests.helpers import create_levels, published_ruleset, settle
from webapp import create_app

HS_TOKEN, BOT = "pat-na1-console-lead-0123", "xoxb-console-lead"


def text(r) -> str:
    return r.get_data(as_text=True)


def ledgers(page: str) -> dict[str, tuple[list[int], int]]:
    """Each ledger table on the page: ruleset id -> (its parts' points, the score it shows)."""
    found = {}
    for ruleset, body in re.findall(r'<table class="compact ledger" data-ruleset="([^"]+)">(.*?)</table>', page, re.S):
        points = [int(p) for p in re.findall(r'<td class="num">([+-]\d+)</td>\s*</tr>', body)]
        score = int(re.search(r"data-ledger-score>(-?\d+)<", body)[1])
        found[ruleset] = (points, score)
    return found


def test_a_lead_s_page_says_why_charts_its_history_forecasts_decay_and_shows_hubspot_and_slack(
    settings, clean, tenant, monkeypatch, run_worker
):
    with FakeHubSpot(tokens=[HS_TOKEN]) as hubspot, FakeSlack(bot_token=BOT) as slack:
        monkeypatch.setenv("HUBSPOT_API_BASE", hubspot.url)  # the worker's jobs read the environment
        monkeypatch.setenv("SLACK_API_BASE", slack.base_url)
        monkeypatch.setenv("SLACK_BOT_TOKEN", BOT)
        app = create_app(
            dataclasses.replace(
                settings, hubspot_api_base=hubspot.url, slack_api_base=slack.base_url, slack_bot_token=BOT
            )
        )
        client = app.test_client()
        api = Api(app.test_client(), tenant)
        member = app.test_client()
        owner = member_client(member, tenant)
        create_levels(api)
        sign_in(client, tenant.email, tenant.password)
        # Before any ruleset: the page says what is missing instead of an empty chart.
        assert api.post("/leads", json={"id": "quiet"}).status_code == 201
        page = text(client.get("/app/leads/quiet"))
        assert "No primary ruleset scores this organization unit yet" in page and '<svg class="chart"' not in page
        assert "HubSpot is not connected" in page and "No Slack alert has been made" in page

        published_ruleset(api, {"page_view": 5, "demo_request": 30, "unsubscribe": -20})
        published_ruleset(api, {"demo_request": 7}, name="Second opinion", primary=False)
        assert api.post("/decays", json={"inactive_for": 7, "unit": "days", "decrease": 20}).status_code == 201
        assert api.put("/integrations/hubspot", json={"access_token": HS_TOKEN}).status_code == 200
        contact_id = hubspot.add_contact("ada@example.com")
        channel = slack.add_channel("sales")
        r = member.put("/integrations/slack/target", json={"kind": "channel", "id": channel}, headers=owner)
        assert r.status_code == 200

        now = datetime.now(UTC)
        alias = [{"alias_kind": "email", "raw_value": "ada@example.com"}]
        sent = [("unsubscribe", 40), ("page_view", 30), ("demo_request", 20), ("demo_request", 3), ("page_view", 1)]
        for event_type, days_ago in sent:  # 0 (the floor gave back 20), 5, 35, 65, 70
            when = (now - timedelta(days=days_ago)).isoformat()
            body = {"lead_id": "ada", "event_type": event_type, "timestamp": when, "aliases": alias}
            assert api.post("/ingest", json=body).status_code == 202
        settle(app, run_worker)
        run_worker()  # HubSpot's sync and Slack's alert, kicked by scoring

        page = text(client.get("/app/leads/ada"))
        shown = html.unescape(page)
        assert " style=" not in page and "<script>" not in page  # the chart too: attributes, nothing inline

        # Why: the ledger per ruleset as the API answers it, each summing to its score.
        explained = api.get("/lead/ada/score-explain").json
        found = ledgers(page)
        assert [ledger["ruleset_id"] for ledger in explained["ledger"]] == list(found)
        for ledger in explained["ledger"]:
            points, score = found[ledger["ruleset_id"]]
            assert sum(points) == score == ledger["score"], ledger
            assert sorted(points) == sorted(p["points"] for p in ledger["parts"] if p["points"] or p["count"])
        assert found[explained["ledger"][0]["ruleset_id"]][1] == 70 and "Floor at 0 gave back" in page
        drivers = re.findall(r'<li><span class="what"><code>(\w+)</code></span> <span class="muted">× (\d+)', page)
        assert drivers == [("demo_request", "2"), ("page_view", "1")]  # the last 30 days, most points first

        # Score history: the API's changes under the chart, drawn over one band per level.
        history = api.get("/lead/ada/score-history", query_string={"days": 90}).json
        assert len(history["points"]) == 5 and history["points"][-1]["score"] == 70
        listed = re.findall(r'<td class="num">([+-]\d+)</td><td class="num">(\d+)</td>', page)
        assert listed == [(f"{p['change']:+d}", str(p["score"])) for p in reversed(history["points"])]
        chart = re.search(r'<svg class="chart".*?</svg>', page, re.S)[0]
        assert chart.count('class="band"') == 4 and 'class="score-line"' in chart
        assert "Score over the last 90 days: 0 then, 70 now" in chart

        # Decay forecast: as GET /lead/{id} answers it.
        forecast = api.get("/lead/ada").json["lead"]["decay_forecast"]
        assert forecast["level"]["name"] == "Warm" and forecast["score"] == 30  # two periods of 20 below Hot
        at = datetime.fromisoformat(forecast["at"].replace("Z", "+00:00"))
        assert f'data-forecast-at="{at.isoformat()}"' in page
        assert re.search(rf"Drops to .*Warm.* on <time [^>]*>{at.day} {at:%B}", shown, re.S)

        # HubSpot: the contact linked and in sync; Slack: the Hot entry's alert, sent.
        assert f'/record/0-1/{contact_id}"' in page and 'data-sync-state="synced"' in page
        assert hubspot.contact_by_email("ada@example.com")["properties"]["engagement_score"] == "70"
        assert len(slack.messages) == 1
        alerts = re.search(r'<table class="compact alerts">.*?</table>', shown, re.S)[0]
        assert "Hot</span>" in alerts and ">70<" in alerts and ">sent<" in alerts
