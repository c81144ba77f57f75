"""End to end with two real `leadpulse worker` processes: events in, HubSpot contacts and Slack alerts out."""

import dataclasses

from tests.auth_helpers import member_client
from tests.conftest import Api, wait_until
from tests.fakes import FakeHubSpot, FakeSlack
from tests.helpers import create_levels, published_ruleset
from webapp import create_app

HS_TOKEN, BOT = "pat-na1-0123456789abcdef", "xoxb-test-token"
UPDATE = "/crm/v3/objects/contacts/batch/update"


def test_warm_to_hot_reaches_hubspot_and_slack_once_through_flaps_outages_and_level_edits(
    settings, clean, tenant, worker_processes
):
    with FakeHubSpot(tokens=[HS_TOKEN]) as hubspot, FakeSlack(bot_token=BOT) as slack:
        app = create_app(
            dataclasses.replace(
                settings, hubspot_api_base=hubspot.url, slack_api_base=slack.base_url, slack_bot_token=BOT
            )
        )
        api = Api(app.test_client(), tenant)
        member = app.test_client()
        headers = member_client(member, tenant)
        levels = create_levels(api)
        published_ruleset(api, {"page_view": 5, "demo_request": 30, "unsubscribe": -20})
        assert api.put("/integrations/hubspot", json={"access_token": HS_TOKEN}).status_code == 200
        channel = slack.add_channel("sales")
        assert (
            member.put(
                "/integrations/slack/target", json={"kind": "channel", "id": channel}, headers=headers
            ).status_code
            == 200
        )
        for email in ("ada@x.io", "b1@x.io", "b2@x.io"):
            hubspot.add_contact(email)
        slack.fail_next(1, 500, method="chat.postMessage")  # Slack is down when the alert is first tried
        worker_processes(2, HUBSPOT_API_BASE=hubspot.url, SLACK_API_BASE=slack.base_url, SLACK_BOT_TOKEN=BOT)

        def send(email, *types):
            for t in types:
                r = api.post(
                    "/ingest", json={"aliases": [{"alias_kind": "email", "raw_value": email}], "event_type": t}
                )
                assert r.status_code == 202

        def contact(email):
            return (hubspot.contact_by_email(email) or {}).get("properties", {})

        def alerts():
            return member.get("/integrations/slack", headers=headers).json["alerts"]

        send("ada@x.io", "demo_request", "page_view")  # 35 Warm
        wait_until(
            lambda: contact("ada@x.io").get("engagement_level") == "Warm", timeout=60, message="ada Warm in HubSpot"
        )
        assert slack.messages == []
        send("ada@x.io", "demo_request")  # 65 Hot
        wait_until(lambda: len(slack.messages) == 1, timeout=60, interval=0.1, message="the Hot alert (after one 500)")
        assert slack.messages[0]["text"] == "ada@x.io entered Hot with a score of 65"
        wait_until(lambda: contact("ada@x.io").get("engagement_score") == "65", timeout=60, message="ada 65 in HubSpot")
        assert contact("ada@x.io")["engagement_level"] == "Hot"

        send("ada@x.io", "unsubscribe")  # 45 Warm
        wait_until(
            lambda: contact("ada@x.io").get("engagement_level") == "Warm", timeout=60, message="ada back to Warm"
        )
        send("ada@x.io", "page_view", "page_view")  # 55 Hot again, inside the cooldown
        wait_until(lambda: contact("ada@x.io").get("engagement_score") == "55", timeout=60, message="ada 55 in HubSpot")
        wait_until(lambda: alerts()["suppressed"] == 1, timeout=60, message="the second entry examined")
        assert len(slack.messages) == 1

        send("b1@x.io", "demo_request", "page_view", "page_view")  # 40 Warm
        send("b2@x.io", "demo_request", "page_view", "page_view")  # 40 Warm
        wait_until(
            lambda: (
                contact("b2@x.io").get("engagement_score") == "40"
                and contact("b1@x.io").get("engagement_score") == "40"
            ),
            timeout=60,
            message="b1 and b2 in HubSpot",
        )
        assert api.put(f"/engagement-levels/{levels['Warm']}", json={"max_score": 34}).status_code == 200
        assert api.put(f"/engagement-levels/{levels['Hot']}", json={"min_score": 35}).status_code == 200
        wait_until(lambda: len(slack.messages) == 2, timeout=60, interval=0.1, message="one digest for the level edit")
        assert slack.messages[1]["text"] == "2 leads entered Hot after the level change"
        wait_until(lambda: contact("b1@x.io").get("engagement_level") == "Hot", timeout=60, message="b1 Hot in HubSpot")
        final = alerts()
        assert final["sent"] == 2 and final["pending"] == 0 and final["failed"] == 0
        assert [r.status for r in slack.requests_to("/api/chat.postMessage")] == [500, 200, 200]
        # every HubSpot write carried values that changed: no contact was written twice with the same score
        writes = [
            (i["id"], i["properties"]["engagement_score"], i["properties"]["engagement_level"])
            for r in hubspot.requests_to(UPDATE)
            if r.status == 200
            for i in r.body["inputs"]
        ]
        assert len(writes) == len(set(writes))
