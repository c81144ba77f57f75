"""The real hubspot-api-client and slack-sdk against the local fakes: proves the fakes speak the services' contracts."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlparse

import hubspot
import pytest
import requests
import urllib3
from hubspot.crm.contacts import (
    ApiException,
    BatchInputSimplePublicObjectBatchInput,
    BatchInputSimplePublicObjectBatchInputForCreate,
    BatchReadInputSimplePublicObjectId,
    BatchResponseSimplePublicObject,
    BatchResponseSimplePublicObjectWithErrors,
    Filter,
    FilterGroup,
    PublicObjectSearchRequest,
    SimplePublicObjectBatchInput,
    SimplePublicObjectBatchInputForCreate,
    SimplePublicObjectId,
)
from hubspot.crm.properties import ApiException as PropertiesApiException
from hubspot.crm.properties import Option, PropertyCreate, PropertyGroupCreate, PropertyUpdate
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import RateLimitErrorRetryHandler
from slack_sdk.oauth import AuthorizeUrlGenerator
from urllib3.util.retry import Retry

from tests.fakes import FakeHubSpot, FakeSlack

TOKEN = "test-token"
LEVELS = [("cold", "Cold"), ("warm", "Warm"), ("hot", "Hot")]


@pytest.fixture
def hs():
    with FakeHubSpot(tokens=(TOKEN, "other-token")) as fake:
        yield fake


def hubspot_client(fake: FakeHubSpot, token: str = TOKEN, **kw) -> hubspot.Client:
    """How LeadPulse will point the client elsewhere (HUBSPOT_API_BASE)."""
    return hubspot.Client.create(access_token=token, host=fake.url, base_url=fake.url, **kw)


def read_by_email(client, emails):
    return client.crm.contacts.batch_api.read(
        BatchReadInputSimplePublicObjectId(
            id_property="email",
            properties=["email"],
            properties_with_history=[],
            inputs=[SimplePublicObjectId(id=e) for e in emails],
        )
    )


def update(client, changes: dict, **kw):
    inputs = [SimplePublicObjectBatchInput(id=cid, properties=props) for cid, props in changes.items()]
    return client.crm.contacts.batch_api.update(BatchInputSimplePublicObjectBatchInput(inputs=inputs), **kw)


def ensure_properties(client, options=LEVELS) -> list[int]:
    """The connect flow's idempotent setup; returns the statuses of the conflicts it swallowed."""
    conflicts = []
    props = client.crm.properties
    try:
        props.groups_api.create("contacts", PropertyGroupCreate(name="leadpulse", label="LeadPulse"))
    except PropertiesApiException as exc:
        if exc.status != 409:
            raise
        conflicts.append(exc.status)
    specs = [
        ("engagement_score", "number", "number", None),
        (
            "engagement_level",
            "enumeration",
            "select",
            [Option(value=v, label=label, hidden=False, display_order=i) for i, (v, label) in enumerate(options)],
        ),
        ("engagement_level_changed_at", "datetime", "date", None),
        ("engagement_top_drivers", "string", "textarea", None),
    ]
    for name, ptype, ftype, opts in specs:
        try:
            props.core_api.create(
                "contacts",
                PropertyCreate(
                    name=name,
                    label=name.replace("_", " ").title(),
                    type=ptype,
                    field_type=ftype,
                    group_name="leadpulse",
                    options=opts,
                ),
            )
        except PropertiesApiException as exc:
            if exc.status != 409:
                raise
            conflicts.append(exc.status)
    return conflicts


# ---------------------------------------------------------------- HubSpot


def test_hubspot_token_check_and_bad_token(hs):
    good = hubspot_client(hs)
    assert good.api_request({"method": "GET", "path": "/account-info/v3/details"}).json()["portalId"] == hs.portal_id
    assert "email" in {p.name for p in good.crm.properties.core_api.get_all("contacts").results}

    with pytest.raises(ApiException) as err:
        hubspot_client(hs, token="wrong").crm.contacts.basic_api.get_page()
    assert err.value.status == 401
    assert json.loads(err.value.body)["category"] == "INVALID_AUTHENTICATION"
    assert hs.requests[-1].headers["Authorization"] == "Bearer wrong"


def test_properties_are_created_idempotently_and_options_follow_levels(hs):
    client = hubspot_client(hs)
    assert ensure_properties(client) == []
    assert ensure_properties(client) == [409] * 5
    assert "leadpulse" in hs.groups
    assert {n: hs.properties[n]["type"] for n in hs.properties if hs.properties[n]["groupName"] == "leadpulse"} == {
        "engagement_score": "number",
        "engagement_level": "enumeration",
        "engagement_level_changed_at": "datetime",
        "engagement_top_drivers": "string",
    }
    conflict = next(r for r in hs.requests if r.status == 409 and r.path == "/crm/v3/properties/contacts")
    assert conflict.body["name"] == "engagement_score"

    new_levels = [("cold", "Cold"), ("warm", "Warm"), ("hot", "Hot"), ("on_fire", "On fire")]
    client.crm.properties.core_api.update(
        "contacts",
        "engagement_level",
        PropertyUpdate(
            options=[
                Option(value=v, label=label, hidden=False, display_order=i) for i, (v, label) in enumerate(new_levels)
            ]
        ),
    )
    fetched = client.crm.properties.core_api.get_by_name("contacts", "engagement_level")
    assert [o.value for o in fetched.options] == ["cold", "warm", "hot", "on_fire"]
    with pytest.raises(PropertiesApiException) as err:
        client.crm.properties.core_api.get_by_name("contacts", "nope")
    assert err.value.status == 404


def test_batch_read_by_email_surfaces_207_as_with_errors_model(hs):
    client = hubspot_client(hs)
    known = hs.add_contact("ada@example.com")

    partial = read_by_email(client, ["ADA@example.com", "missing@example.com"])
    assert isinstance(partial, BatchResponseSimplePublicObjectWithErrors)
    assert hs.requests[-1].status == 207
    assert [(r.id, r.properties["email"]) for r in partial.results] == [(known, "ada@example.com")]
    assert partial.num_errors == 1
    assert partial.errors[0].category == "OBJECT_NOT_FOUND"
    assert partial.errors[0].context == {"ids": ["missing@example.com"]}

    complete = read_by_email(client, ["ada@example.com"])
    assert type(complete) is BatchResponseSimplePublicObject
    assert complete.status == "COMPLETE" and len(complete.results) == 1


def test_batch_update_takes_100_and_rejects_101(hs):
    client = hubspot_client(hs)
    ensure_properties(client)
    created = client.crm.contacts.batch_api.create(
        BatchInputSimplePublicObjectBatchInputForCreate(
            inputs=[
                SimplePublicObjectBatchInputForCreate(properties={"email": f"lead{i}@example.com"}, associations=[])
                for i in range(101)
            ][:100]
        )
    )
    ids = [c.id for c in created.results]
    assert len(ids) == 100 and len(hs.contacts) == 100

    result = update(client, {cid: {"engagement_score": "42", "engagement_level": "hot"} for cid in ids})
    assert isinstance(result, BatchResponseSimplePublicObject) and len(result.results) == 100
    assert all(hs.contacts[cid]["properties"]["engagement_level"] == "hot" for cid in ids)

    extra = hs.add_contact("lead100@example.com")
    with pytest.raises(ApiException) as err:
        update(client, {cid: {"engagement_score": "7"} for cid in [*ids, extra]})
    assert err.value.status == 400
    assert json.loads(err.value.body)["category"] == "VALIDATION_ERROR"
    assert all(hs.contacts[cid]["properties"]["engagement_score"] == "42" for cid in ids)


def test_batch_update_unknown_ids_207_and_invalid_values_400(hs):
    client = hubspot_client(hs)
    ensure_properties(client)
    known = hs.add_contact("ada@example.com")

    partial = update(client, {known: {"engagement_score": "12.5"}, "999999": {"engagement_score": "3"}})
    assert isinstance(partial, BatchResponseSimplePublicObjectWithErrors)
    assert partial.errors[0].context == {"ids": ["999999"]}
    assert hs.contacts[known]["properties"]["engagement_score"] == "12.5"

    for bad, code in (
        ({"engagement_level": "lukewarm"}, "INVALID_OPTION"),
        ({"engagement_score": "lots"}, "INVALID_FLOAT"),
        ({"no_such_prop": "1"}, "PROPERTY_DOESNT_EXIST"),
    ):
        with pytest.raises(ApiException) as err:
            update(client, {known: {"engagement_score": "99", **bad}})
        body = json.loads(err.value.body)
        assert (err.value.status, body["category"], body["errors"][0]["code"]) == (400, "VALIDATION_ERROR", code)
    assert hs.contacts[known]["properties"]["engagement_score"] == "12.5"  # the whole batch was refused


def test_batch_create_conflict_on_existing_email(hs):
    client = hubspot_client(hs)
    existing = hs.add_contact("ada@example.com")
    with pytest.raises(ApiException) as err:
        client.crm.contacts.batch_api.create(
            BatchInputSimplePublicObjectBatchInputForCreate(
                inputs=[SimplePublicObjectBatchInputForCreate(properties={"email": "Ada@Example.com"}, associations=[])]
            )
        )
    assert err.value.status == 409
    assert json.loads(err.value.body)["message"] == f"Contact already exists. Existing ID: {existing}"
    assert len(hs.contacts) == 1


def test_list_and_search_paginate_through_all_contacts(hs):
    client = hubspot_client(hs)
    ids = {hs.add_contact(f"p{i}@example.com") for i in range(250)}

    everything = client.crm.contacts.get_all(properties=["email"])
    assert {c.id for c in everything} == ids and len(everything) == 250
    pages = hs.requests_to("/crm/v3/objects/contacts", "GET")
    assert [p.query.get("after") for p in pages] == [None, ["201"], ["301"]]
    assert pages[0].query["properties"] == ["email"]

    found, after = [], None
    while True:
        page = client.crm.contacts.search_api.do_search(
            PublicObjectSearchRequest(
                filter_groups=[FilterGroup(filters=[Filter(property_name="email", operator="HAS_PROPERTY")])],
                properties=["email"],
                limit=100,
                after=after,
                sorts=[],
            )
        )
        assert page.total == 250
        found += [c.id for c in page.results]
        if page.paging is None:
            break
        after = page.paging.next.after
    assert sorted(found, key=int) == sorted(ids, key=int)


def test_ten_secondly_rate_limit_per_token(hs):
    hs.rate_limit_per_10s = 3
    client = hubspot_client(hs)
    remaining = []
    for _ in range(3):
        _, status, headers = client.crm.contacts.batch_api.read_with_http_info(
            BatchReadInputSimplePublicObjectId(inputs=[], properties=[], properties_with_history=[])
        )
        remaining.append(headers["X-HubSpot-RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]

    with pytest.raises(ApiException) as err:
        read_by_email(client, ["a@example.com"])
    assert err.value.status == 429
    body = json.loads(err.value.body)
    assert (body["policyName"], body["errorType"]) == ("TEN_SECONDLY_ROLLING", "RATE_LIMIT")
    assert err.value.headers["X-HubSpot-RateLimit-Max"] == "3"
    assert err.value.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert 1 <= int(err.value.headers["Retry-After"]) <= 10

    assert (
        read_by_email(hubspot_client(hs, token="other-token"), ["a@example.com"]).num_errors == 1
    )  # other token has its own window


def test_daily_limit_is_a_distinct_policy(hs):
    hs.exhaust_daily(TOKEN)
    with pytest.raises(ApiException) as err:
        read_by_email(hubspot_client(hs), ["a@example.com"])
    assert err.value.status == 429
    assert json.loads(err.value.body)["policyName"] == "DAILY"
    assert err.value.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "0"
    assert "Retry-After" not in err.value.headers


def test_injected_5xx_surface_as_service_exceptions_then_recover(hs):
    client = hubspot_client(hs)
    hs.add_contact("ada@example.com")
    hs.fail_next(1, 500, path="/crm/v3/objects/contacts/batch")
    hs.fail_next(1, 502, path="/crm/v3/objects/contacts/batch/read")
    for status in (500, 502):
        with pytest.raises(ApiException) as err:
            read_by_email(client, ["ada@example.com"])
        assert err.value.status == status
    assert len(read_by_email(client, ["ada@example.com"]).results) == 1
    assert [r.status for r in hs.requests] == [500, 502, 200]


def test_injected_429_body_and_urllib3_default_retry_behaviour(hs):
    """Pins what the generated client does by itself: GETs are retried by urllib3 when Retry-After is sent, POSTs never."""
    client = hubspot_client(hs)
    hs.fail_next(1, 429, retry_after=0)
    client.crm.contacts.basic_api.get_page()
    assert [r.status for r in hs.requests] == [429, 200]  # silently retried, honouring Retry-After

    hs.fail_next(1, 429, policy="TEN_SECONDLY_ROLLING", retry_after=0)
    with pytest.raises(ApiException) as err:
        read_by_email(client, ["a@example.com"])
    assert err.value.status == 429 and json.loads(err.value.body)["policyName"] == "TEN_SECONDLY_ROLLING"

    retrying = hubspot_client(
        hs, retry=Retry(total=3, status_forcelist=[429, 500, 502, 503], allowed_methods=None, backoff_factor=0)
    )
    hs.fail_next(2, 503, path="/crm/v3/objects/contacts/batch/read")
    before = len(hs.requests)
    assert read_by_email(retrying, ["a@example.com"]).num_errors == 1
    assert len(hs.requests) - before == 3
    hs.fail_next(4, 503, path="/crm/v3/objects/contacts/batch/read")
    with pytest.raises(urllib3.exceptions.MaxRetryError):  # not an ApiException once urllib3's budget is spent
        read_by_email(retrying, ["a@example.com"])


def test_hang_times_out_client_while_server_still_applies_the_write(hs):
    client = hubspot_client(hs)
    ensure_properties(client)
    cid = hs.add_contact("ada@example.com")
    hs.hang_next(1, seconds=1.2, path="/crm/v3/objects/contacts/batch/update")
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        update(client, {cid: {"engagement_score": "5"}}, _request_timeout=0.2)
    assert time.monotonic() - started < 1.2  # gave up before the server answered
    hs.wait_for(lambda: hs.requests_to("/crm/v3/objects/contacts/batch/update")[-1].status is not None)
    assert (
        hs.contacts[cid]["properties"]["engagement_score"] == "5"
    )  # the outcome is unknown to the client: retries must be idempotent


# ---------------------------------------------------------------- Slack


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


def web(fake: FakeSlack, token: str = "xoxb-test-token", **kw) -> WebClient:
    """How LeadPulse will point slack-sdk elsewhere (SLACK_API_BASE)."""
    return WebClient(token=token, base_url=fake.base_url, **kw)


def test_slack_auth_test_and_invalid_auth(slack):
    who = web(slack).auth_test()
    assert (who["team_id"], who["user_id"], who["bot_id"]) == ("T0000TEST", "U0000BOT", "B0000BOT")
    with pytest.raises(SlackApiError) as err:
        web(slack, token="xoxb-wrong").auth_test()
    assert err.value.response["error"] == "invalid_auth"


def test_slack_post_message_is_recorded_with_blocks(slack):
    cid = slack.add_channel("sales-alerts")
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*Ada* entered *Hot*"}}]
    sent = web(slack).chat_postMessage(channel="#sales-alerts", text="Ada entered Hot", blocks=blocks)
    assert sent["channel"] == cid
    assert slack.messages == [
        {
            "channel": cid,
            "channel_name": "sales-alerts",
            "text": "Ada entered Hot",
            "blocks": blocks,
            "ts": sent["ts"],
            "team_id": "T0000TEST",
            "args": slack.messages[0]["args"],
            "metadata": None,
        }
    ]
    assert slack.requests[-1].headers["Content-Type"].startswith("application/json")


def test_slack_channel_errors_raise_and_record_nothing(slack):
    client = web(slack)
    outsider = slack.add_channel("private-ish", member=False)
    broken = slack.add_channel("broken")
    slack.fail_channel(broken)
    for channel, error in (
        ("C999", "channel_not_found"),
        (outsider, "not_in_channel"),
        ("#broken", "channel_not_found"),
    ):
        with pytest.raises(SlackApiError) as err:
            client.chat_postMessage(channel=channel, text="hello")
        assert (err.value.response.status_code, err.value.response["error"]) == (200, error)
    assert slack.messages == []


def test_slack_conversations_and_users_page_through_everything(slack):
    ids = [slack.add_channel(f"chan-{i}") for i in range(7)]
    slack.add_channel("secret", private=True, member=False)
    # slack-sdk iterates by mutating one SlackResponse, so each page must be read inside the loop, not after list().
    pages = [page["channels"] for page in web(slack).conversations_list(limit=3, exclude_archived=True)]
    assert [len(p) for p in pages] == [3, 3, 1]
    assert [c["id"] for p in pages for c in p] == ids
    assert [bool(r.body.get("cursor")) for r in slack.requests_to("/api/conversations.list")] == [False, True, True]

    uid = slack.add_user("ada", real_name="Ada Lovelace", email="ada@example.com")
    members = [m for p in web(slack).users_list(limit=1) for m in p["members"]]
    assert [m["id"] for m in members] == ["USLACKBOT", uid]
    assert members[1]["profile"]["email"] == "ada@example.com"


def test_slack_ratelimited_without_retry_handler(slack):
    slack.add_channel("sales")
    slack.fail_next(1, 429, method="chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as err:
        web(slack, retry_handlers=[]).chat_postMessage(channel="sales", text="x")
    assert err.value.response.status_code == 429
    assert err.value.response["error"] == "ratelimited"
    assert err.value.response.headers["Retry-After"] == "7"
    assert slack.messages == []

    slack.set_rate_limit("chat.postMessage", 2, per_seconds=60)
    client = web(slack)
    client.chat_postMessage(channel="sales", text="1")
    client.chat_postMessage(channel="sales", text="2")
    with pytest.raises(SlackApiError) as err:
        client.chat_postMessage(channel="sales", text="3")
    assert err.value.response.status_code == 429 and 1 <= int(err.value.response.headers["Retry-After"]) <= 60
    assert [m["text"] for m in slack.messages] == ["1", "2"]


def test_slack_ratelimited_with_retry_handler_delivers_once(slack):
    slack.add_channel("sales")
    slack.fail_next(1, 429, method="chat.postMessage", retry_after=0)
    sent = web(slack, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)]).chat_postMessage(
        channel="sales", text="x"
    )
    assert sent["ok"]
    assert [r.status for r in slack.requests_to("/api/chat.postMessage")] == [429, 200]
    assert len(slack.messages) == 1


def test_slack_server_errors_raise(slack):
    slack.add_channel("sales")
    slack.fail_next(1, 500, method="chat.postMessage")
    slack.fail_next(1, 503, method="chat.postMessage")
    for status in (500, 503):
        with pytest.raises(SlackApiError) as err:
            web(slack).chat_postMessage(channel="sales", text="x")
        assert err.value.response.status_code == status
    assert web(slack).chat_postMessage(channel="sales", text="x")["ok"]
    assert len(slack.messages) == 1


def test_slack_slow_answer_posts_at_once_and_times_the_client_out(slack):
    """A caller that gives up (or dies) while Slack is slow to answer never learns its message went out."""
    cid = slack.add_channel("sales")
    slack.slow_next(1, seconds=5, method="chat.postMessage")
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        web(slack, timeout=1).chat_postMessage(
            channel="sales", text="x", metadata={"event_type": "t", "event_payload": {}}
        )
    assert time.monotonic() - started < 4
    assert [m["text"] for m in slack.messages] == ["x"]  # there before the answer
    history = web(slack).conversations_history(channel=cid, include_all_metadata=True)["messages"]
    assert [(m["ts"], m["metadata"]["event_type"]) for m in history] == [(slack.messages[0]["ts"], "t")]
    assert web(slack).chat_postMessage(channel="sales", text="y")["ok"]  # only the next request was slow


def test_slack_oauth_v2_access_exchange(slack):
    code = slack.add_oauth_code(team_id="T0000BETA", team_name="Beta")
    anon = WebClient(base_url=slack.base_url)
    with pytest.raises(SlackApiError) as err:
        anon.oauth_v2_access(client_id=slack.client_id, client_secret="wrong", code=code)
    assert err.value.response["error"] == "bad_client_secret"

    grant = anon.oauth_v2_access(client_id=slack.client_id, client_secret=slack.client_secret, code=code)
    assert (grant["team"], grant["token_type"]) == ({"id": "T0000BETA", "name": "Beta"}, "bot")
    assert slack.requests[-1].headers["Authorization"].startswith("Basic ")
    assert web(slack, token=grant["access_token"]).auth_test()["team_id"] == "T0000BETA"

    with pytest.raises(SlackApiError) as err:  # codes are single use
        anon.oauth_v2_access(client_id=slack.client_id, client_secret=slack.client_secret, code=code)
    assert err.value.response["error"] == "invalid_code"


def test_slack_authorize_redirect_round_trip(slack):
    redirect = "http://127.0.0.1:9/integrations/slack/callback"
    url = AuthorizeUrlGenerator(
        client_id=slack.client_id,
        scopes=["chat:write"],
        redirect_uri=redirect,
        authorization_url=f"{slack.url}/oauth/v2/authorize",
    ).generate(state="s-123")
    answer = requests.get(url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302
    location = urlparse(answer.headers["Location"])
    params = parse_qs(location.query)
    assert (f"{location.scheme}://{location.netloc}{location.path}", params["state"]) == (redirect, ["s-123"])
    grant = WebClient(base_url=slack.base_url).oauth_v2_access(
        client_id=slack.client_id, client_secret=slack.client_secret, code=params["code"][0], redirect_uri=redirect
    )
    assert grant["access_token"].startswith("xoxb-")
