"""POST /webhooks/hubspot: v3 signatures, contact.creation links by email, propertyChange updates metadata (no echo)."""

import dataclasses
import json
import time

import pytest
from sqlalchemy import select

from integrations.hubspot_webhooks import sign_v3
from models.hubspot import HubSpotContact
from tests.auth_helpers import member_client
from tests.conftest import Api
from tests.fakes import FakeHubSpot
from tests.helpers import leads_by_id, run_scheduled
from webapp import create_app

TOKEN, APP_SECRET = "pat-na1-0123456789abcdef", "hubspot-app-secret-0123"


@pytest.fixture
def hooked(settings, clean, tenant):
    with FakeHubSpot(tokens=[TOKEN]) as fake:
        app = create_app(dataclasses.replace(settings, hubspot_api_base=fake.url))
        app.testing = True
        client = app.test_client()
        api = Api(client, tenant)
        assert api.put("/integrations/hubspot", json={"access_token": TOKEN}).status_code == 200
        yield fake, client, api, app, add_source(client, tenant)


def add_source(client, tenant) -> dict:
    """A HubSpot webhook source of the tenant's OU, as its member creates it."""
    r = client.post(
        "/webhooks/sources",
        json={"name": "HubSpot", "kind": "hubspot", "client_secret": APP_SECRET},
        headers=member_client(client, tenant),
    )
    assert r.status_code == 201 and "client_secret" not in r.json, r.json
    return r.json


def deliver(client, url, events, secret=APP_SECRET, at_ms=None, headers=None):
    body = json.dumps(events).encode()
    ts = str(at_ms if at_ms is not None else int(time.time() * 1000))
    sig = sign_v3(secret, "POST", f"http://localhost{url}", body, ts)
    h = {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": ts,
        "X-HubSpot-Signature-v3": sig,
        **(headers or {}),
    }
    return client.post(url, data=body, headers=h)


def test_contacts_link_and_property_changes_update_metadata(hooked):
    fake, client, api, app, src = hooked
    contact = fake.add_contact("Ada@X.io")
    # HubSpot's documented example deliveries, with our contact's id and our portal's id
    events = [
        {
            "objectId": int(contact),
            "changeSource": "IMPORT",
            "eventId": 3816279480,
            "subscriptionId": 22,
            "portalId": fake.portal_id,
            "appId": 1160452,
            "occurredAt": 1462216307945,
            "subscriptionType": "contact.creation",
            "attemptNumber": 0,
        },
        {
            "objectId": int(contact),
            "propertyName": "lifecyclestage",
            "propertyValue": "subscriber",
            "changeSource": "ACADEMY_LESSON",
            "eventId": 3816279340,
            "subscriptionId": 25,
            "portalId": fake.portal_id,
            "appId": 1160452,
            "occurredAt": 1462216307945,
            "subscriptionType": "contact.propertyChange",
            "attemptNumber": 0,
        },
        {
            "objectId": int(contact),
            "propertyName": "engagement_score",
            "propertyValue": "99",
            "eventId": 3816279341,
            "subscriptionType": "contact.propertyChange",
        },  # our own write echoed back
        {"objectId": 42, "eventId": 3816279342, "subscriptionType": "deal.creation"},
    ]
    r = deliver(client, src["url"], events)
    assert r.status_code == 200 and r.json == {"applied": 2, "pending": 0, "duplicate": 0, "ignored": 2}, r.json
    [lead] = leads_by_id(api).values()
    detail = api.get(f"/lead/{lead['lead_id']}").json["lead"]
    assert detail["metadata"] == {"hubspot_lifecyclestage": "subscriber"}
    assert (
        api.post(
            "/ingest", json={"aliases": [{"alias_kind": "email", "raw_value": "ada@x.io"}], "event_type": "x"}
        ).json["lead_id"]
        == lead["lead_id"]
    )
    with app.extensions["leadpulse"].Session() as s:
        assert s.execute(select(HubSpotContact.hubspot_id)).scalars().all() == [contact]
    again = deliver(client, src["url"], events, at_ms=int(time.time() * 1000))  # HubSpot retries a delivery
    assert again.json == {"applied": 0, "pending": 0, "duplicate": 4, "ignored": 0}


def test_bad_deliveries_are_refused_and_counted(hooked):
    fake, client, api, app, src = hooked
    events = [{"objectId": 1, "eventId": 1, "subscriptionType": "contact.creation"}]
    assert deliver(client, src["url"], events, secret="someone-elses-secret").json["error"]["code"] == "bad_signature"
    stale = deliver(client, src["url"], events, at_ms=int(time.time() * 1000) - 6 * 60 * 1000)
    assert stale.status_code == 401 and stale.json["error"]["code"] == "stale_timestamp"
    future = deliver(client, src["url"], events, at_ms=int(time.time() * 1000) + 6 * 60 * 1000)
    assert future.status_code == 401 and future.json["error"]["code"] == "stale_timestamp"
    missing = client.post(src["url"], json=events)
    assert missing.status_code == 400 and missing.json["error"]["code"] == "missing_signature_headers"
    assert deliver(client, "/webhooks/hubspot?source=00000000-0000-0000-0000-000000000000", events).status_code == 404
    assert deliver(client, "/webhooks/hubspot", events).status_code == 404
    assert deliver(client, src["url"], {"not": "a list"}).status_code == 400
    tampered = deliver(client, src["url"], events)
    assert tampered.status_code == 200  # a good delivery; the same body changed after signing is refused:
    body = json.dumps(events).encode()
    ts = str(int(time.time() * 1000))
    sig = sign_v3(APP_SECRET, "POST", f"http://localhost{src['url']}", body, ts)
    r = client.post(
        src["url"],
        data=body.replace(b"1", b"2"),
        headers={"Content-Type": "application/json", "X-HubSpot-Request-Timestamp": ts, "X-HubSpot-Signature-v3": sig},
    )
    assert r.status_code == 401 and r.json["error"]["code"] == "bad_signature"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'webhook_deliveries_rejected_total{reason="stale_timestamp",source="hubspot"} 2.0' in metrics
    r = client.post(
        "/webhooks/sources", json={"name": "no secret", "kind": "hubspot"}, headers=member_client(client, api.tenant)
    )
    assert r.status_code == 400 and "client_secret" in r.json["error"]["details"]


def test_hubspot_down_while_reading_new_contacts_makes_hubspot_deliver_again(hooked):
    fake, client, api, app, src = hooked
    contact = fake.add_contact("bob@x.io")
    events = [{"objectId": int(contact), "eventId": 7, "subscriptionType": "contact.creation"}]
    fake.fail_next(1, 502, path="/crm/v3/objects/contacts/batch/read")
    r = deliver(client, src["url"], events)
    assert r.status_code == 503 and r.headers["Retry-After"] == "10"
    assert leads_by_id(api) == {}  # nothing applied, the eventId not spent
    assert deliver(client, src["url"], events).json == {"applied": 1, "pending": 0, "duplicate": 0, "ignored": 0}


def test_events_of_another_portal_are_ignored(hooked):
    fake, client, api, app, src = hooked
    contact = fake.add_contact("cy@x.io")
    mine = {"objectId": int(contact), "eventId": 11, "subscriptionType": "contact.creation", "portalId": fake.portal_id}
    theirs = {**mine, "eventId": 12, "portalId": int(fake.portal_id) + 1}
    assert deliver(client, src["url"], [theirs, mine]).json == {
        "applied": 1,
        "pending": 0,
        "duplicate": 0,
        "ignored": 1,
    }


def test_signature_over_the_public_url_and_the_raw_query_behind_a_proxy(settings, clean, tenant):
    """Computed here from HubSpot's description, not with our sign_v3: POST + public URI + body + timestamp."""
    import base64
    import hashlib
    import hmac

    with FakeHubSpot(tokens=[TOKEN]) as fake:
        app = create_app(dataclasses.replace(settings, hubspot_api_base=fake.url, public_url="https://lp.example.com"))
        client = app.test_client()
        r = client.post(
            "/webhooks/sources",
            json={"name": "HubSpot", "kind": "hubspot", "client_secret": APP_SECRET},
            headers=member_client(client, tenant),
        )
        path = f"/webhooks/hubspot?source={r.json['id']}&note=caf%C3%A9%3A"
        body = json.dumps([{"objectId": 1, "eventId": 1, "subscriptionType": "deal.creation"}]).encode()
        ts = str(int(time.time() * 1000))
        # %3A is one of the characters HubSpot decodes before signing; %C3%A9 is not
        uri = f"https://lp.example.com/webhooks/hubspot?source={r.json['id']}&note=caf%C3%A9:"
        sig = base64.b64encode(
            hmac.new(APP_SECRET.encode(), b"POST" + uri.encode() + body + ts.encode(), hashlib.sha256).digest()
        ).decode()
        ok = client.post(
            path,
            data=body,
            headers={
                "Content-Type": "application/json",
                "X-HubSpot-Request-Timestamp": ts,
                "X-HubSpot-Signature-v3": sig,
                "X-Forwarded-Proto": "http",
            },
        )
        assert ok.status_code == 200, ok.json
        assert r.json["url"] == f"/webhooks/hubspot?source={r.json['id']}"


def test_a_contact_hubspot_refuses_to_read_is_ignored_not_redelivered_forever(hooked):
    fake, client, api, app, src = hooked
    fake.fail_next(1, 400, path="/crm/v3/objects/contacts/batch/read")
    events = [
        {"objectId": 5, "eventId": 21, "subscriptionType": "contact.creation"},
        {"objectId": "not-an-id", "eventId": 22, "subscriptionType": "contact.creation"},
    ]
    r = deliver(client, src["url"], events)
    assert r.status_code == 200 and r.json == {"applied": 0, "pending": 0, "duplicate": 0, "ignored": 2}


def test_unstorable_text_missing_event_ids_and_oversized_metadata(hooked):
    """NUL in any field is a 400 (not a 500 HubSpot would retry); an event without an id is ignored, never a 'None'
    key that would swallow the next one; a property change that would pass the metadata limit is ignored."""
    fake, client, api, app, src = hooked
    contact = fake.add_contact("ada@x.io")
    assert (
        deliver(
            client, src["url"], [{"objectId": int(contact), "eventId": 1, "subscriptionType": "contact.creation"}]
        ).status_code
        == 200
    )
    for field in ("eventId", "objectId", "propertyName", "propertyValue"):
        event = {
            "objectId": int(contact),
            "eventId": 2,
            "subscriptionType": "contact.propertyChange",
            "propertyName": "city",
            "propertyValue": "Paris",
            field: "nul\u0000",
        }
        r = deliver(client, src["url"], [event])
        assert r.status_code == 400 and f"0.{field}" in r.json["error"]["details"], (field, r.json)
    change = {
        "objectId": int(contact),
        "subscriptionType": "contact.propertyChange",
        "propertyName": "city",
        "propertyValue": "Paris",
    }
    r = deliver(client, src["url"], [{**change, "eventId": None}, {**change, "eventId": None, "propertyValue": "Rome"}])
    assert r.json == {"applied": 0, "pending": 0, "duplicate": 0, "ignored": 2}
    big = "x" * (60 * 1024)
    r = deliver(
        client,
        src["url"],
        [
            {**change, "eventId": 10, "propertyName": "notes", "propertyValue": big},
            {**change, "eventId": 11, "propertyName": "more_notes", "propertyValue": big},
        ],
    )
    assert r.json == {"applied": 1, "pending": 0, "duplicate": 0, "ignored": 1}
    [lead] = leads_by_id(api).values()
    assert list(api.get(f"/lead/{lead['lead_id']}").json["lead"]["metadata"]) == ["hubspot_notes"]


def test_a_delivery_of_many_events_applies_in_order_once(hooked):
    """Creations link first, then changes apply in delivery order (the later value wins); an eventId twice counts once."""
    fake, client, api, app, src = hooked
    ids = [fake.add_contact(f"c{i}@x.io") for i in range(5)]
    events = [
        {"objectId": int(cid), "eventId": 100 + n, "subscriptionType": "contact.creation"} for n, cid in enumerate(ids)
    ]
    events += [
        {
            "objectId": int(cid),
            "eventId": 200 + n,
            "subscriptionType": "contact.propertyChange",
            "propertyName": "lifecyclestage",
            "propertyValue": "lead",
        }
        for n, cid in enumerate(ids)
    ]
    events += [
        {
            "objectId": int(ids[0]),
            "eventId": 300,
            "subscriptionType": "contact.propertyChange",
            "propertyName": "lifecyclestage",
            "propertyValue": "customer",
        },
        {"objectId": int(ids[0]), "eventId": 300},
    ]
    r = deliver(client, src["url"], events)
    assert r.status_code == 200 and r.json == {"applied": 11, "pending": 0, "duplicate": 1, "ignored": 0}, r.json
    by_email = {api.get(f"/lead/{lid}/aliases").json[0]["value"]: lead for lid, lead in leads_by_id(api).items()}
    stages = {
        email: api.get(f"/lead/{lead['lead_id']}").json["lead"]["metadata"]["hubspot_lifecyclestage"]
        for email, lead in by_email.items()
    }
    assert stages == {"c0@x.io": "customer", **{f"c{i}@x.io": "lead" for i in range(1, 5)}}


@pytest.fixture
def unconnected(settings, clean, tenant, monkeypatch):
    """A HubSpot source on an OU no token serves yet; `connect` puts the token in, as PUT /integrations/hubspot does."""
    with FakeHubSpot(tokens=[TOKEN]) as fake:
        monkeypatch.setenv("HUBSPOT_API_BASE", fake.url)  # for the workers
        monkeypatch.delenv("HUBSPOT_ACCESS_TOKEN", raising=False)
        app = create_app(dataclasses.replace(settings, hubspot_api_base=fake.url, hubspot_access_token=None))
        app.testing = True
        client = app.test_client()
        yield fake, client, Api(client, tenant), app, add_source(client, tenant)


def links(app) -> dict[str, str]:
    """HubSpot contact id -> the lead's primary email."""
    with app.extensions["leadpulse"].Session() as s:
        from models.lead_identity import primary_email
        from models.leads import Lead

        return dict(
            s.execute(
                select(HubSpotContact.hubspot_id, primary_email()).join(Lead, Lead.pk == HubSpotContact.lead_pk)
            ).all()
        )


def test_creations_without_a_token_wait_and_are_linked_once_hubspot_is_connected(unconnected, run_worker):
    fake, client, api, app, src = unconnected
    ada, bob, nameless = fake.add_contact("Ada@X.io"), fake.add_contact("bob@x.io"), fake.add_contact(None)
    assert (
        api.post(
            "/ingest", json={"aliases": [{"alias_kind": "email", "raw_value": "bob@x.io"}], "event_type": "x"}
        ).status_code
        == 202
    )
    events = [
        {"objectId": int(cid), "eventId": 500 + n, "subscriptionType": "contact.creation", "portalId": fake.portal_id}
        for n, cid in enumerate((ada, bob, nameless))
    ]
    events += [
        {"objectId": "not-an-id", "eventId": 510, "subscriptionType": "contact.creation"},
        {"objectId": int(ada), "eventId": 511, "subscriptionType": "contact.creation"},
    ]  # announced twice: kept once
    r = deliver(client, src["url"], events)
    assert r.status_code == 200 and r.json == {"applied": 0, "pending": 4, "duplicate": 0, "ignored": 1}, r.json
    assert deliver(client, src["url"], events).json == {"applied": 0, "pending": 0, "duplicate": 5, "ignored": 0}
    assert api.get("/integrations/hubspot").json["pending_creations"] == 3
    [bob_lead] = leads_by_id(api)  # ada's lead is not created yet
    assert links(app) == {}
    run_worker()  # nothing serves the OU: they keep waiting
    assert links(app) == {} and api.get("/integrations/hubspot").json["pending_creations"] == 3

    assert api.put("/integrations/hubspot", json={"access_token": TOKEN}).status_code == 200
    run_worker()  # the sync connecting enqueues links them first
    assert links(app) == {ada: "ada@x.io", bob: "bob@x.io"}  # the contact without an email has nothing to link by
    leads = {api.get(f"/lead/{lid}").json["lead"]["primary_email"]: lid for lid in leads_by_id(api)}
    assert set(leads) == {"ada@x.io", "bob@x.io"} and leads["bob@x.io"] == bob_lead  # bob's lead linked, ada's created
    assert api.get("/integrations/hubspot").json["pending_creations"] == 0
    assert fake.contact_by_email("ada@x.io")["properties"]["engagement_score"] == "0"  # then synced by id as usual
    change = {
        "objectId": int(ada),
        "eventId": 520,
        "subscriptionType": "contact.propertyChange",
        "propertyName": "city",
        "propertyValue": "Paris",
    }
    assert deliver(client, src["url"], [change]).json["applied"] == 1


def test_the_environment_token_links_waiting_creations_when_the_sweep_runs(
    unconnected, run_worker, settings, redis_conn, monkeypatch
):
    from models.db import session_factory
    from worker.sweep import sweep_once

    fake, client, api, app, src = unconnected
    cy = fake.add_contact("cy@x.io")
    assert (
        deliver(client, src["url"], [{"objectId": int(cy), "eventId": 1, "subscriptionType": "contact.creation"}]).json[
            "pending"
        ]
        == 1
    )
    monkeypatch.setenv("HUBSPOT_ACCESS_TOKEN", TOKEN)  # a restart with the default token set
    sweep_once(
        session_factory(settings.database_url),
        redis_conn,
        settings.queue_name,
        2,
        dataclasses.replace(settings, hubspot_access_token=TOKEN),
    )
    run_worker()
    assert links(app) == {cy: "cy@x.io"}


def test_waiting_creations_of_another_portal_are_dropped_and_a_transient_failure_keeps_them(
    unconnected, run_worker, settings, redis_conn
):
    fake, client, api, app, src = unconnected
    dee, eve = fake.add_contact("dee@x.io"), fake.add_contact("eve@x.io")
    theirs = {
        "objectId": int(dee),
        "eventId": 1,
        "subscriptionType": "contact.creation",
        "portalId": int(fake.portal_id) + 1,
    }
    mine = {"objectId": int(eve), "eventId": 2, "subscriptionType": "contact.creation", "portalId": fake.portal_id}
    assert deliver(client, src["url"], [theirs, mine]).json["pending"] == 2
    fake.fail_next(1, 502, path="/crm/v3/objects/contacts/batch/read")
    assert api.put("/integrations/hubspot", json={"access_token": TOKEN}).status_code == 200
    run_worker()
    assert links(app) == {} and api.get("/integrations/hubspot").json["pending_creations"] == 2  # rescheduled, not lost
    run_scheduled(settings, redis_conn, run_worker)
    assert links(app) == {eve: "eve@x.io"} and api.get("/integrations/hubspot").json["pending_creations"] == 0


def waiting_creation_and_a_lead_to_sync(unconnected) -> tuple[str, str]:
    """gus's creation waits for a token; hal's lead has an email HubSpot knows: (gus's and hal's contact ids)."""
    fake, client, api, _, src = unconnected
    gus = fake.add_contact("gus@x.io")
    created = {"objectId": int(gus), "eventId": 1, "subscriptionType": "contact.creation"}
    assert deliver(client, src["url"], [created]).json["pending"] == 1
    hal_event = {"aliases": [{"alias_kind": "email", "raw_value": "hal@x.io"}], "event_type": "x"}
    assert api.post("/ingest", json=hal_event).status_code == 202
    return gus, fake.add_contact("hal@x.io")


def test_creations_hubspot_keeps_failing_to_read_are_given_up_and_the_contacts_sync_on(
    unconnected, run_worker, settings, redis_conn
):
    from integrations.hubspot_sync import TRANSIENT_BUDGET

    fake, client, api, app, src = unconnected
    gus, hal = waiting_creation_and_a_lead_to_sync(unconnected)
    fake.fail_next(TRANSIENT_BUDGET, 502, path="/crm/v3/objects/contacts/batch/read")
    assert api.put("/integrations/hubspot", json={"access_token": TOKEN}).status_code == 200
    run_worker()
    for _ in range(TRANSIENT_BUDGET):  # each 502 reschedules the sync; the last one gives the creation up
        run_scheduled(settings, redis_conn, run_worker)
    assert api.get("/integrations/hubspot").json["pending_creations"] == 0 and gus not in links(app)
    assert fake.contacts[hal]["properties"].get("engagement_score") == "0"  # hal's lead synced by email meanwhile


def test_creations_and_contacts_spend_their_own_retry_budgets(unconnected, run_worker, settings, redis_conn):
    """Four 5xx reading a waiting creation, then one on the contacts' update: neither is given up (before, the two
    shared one count that a successful link never reset)."""
    from integrations.hubspot_sync import TRANSIENT_BUDGET

    fake, client, api, app, src = unconnected
    gus, hal = waiting_creation_and_a_lead_to_sync(unconnected)
    fake.fail_next(TRANSIENT_BUDGET - 1, 502, path="/crm/v3/objects/contacts/batch/read")
    fake.fail_next(1, 502, path="/crm/v3/objects/contacts/batch/update")
    assert api.put("/integrations/hubspot", json={"access_token": TOKEN}).status_code == 200
    run_worker()
    for _ in range(TRANSIENT_BUDGET + 1):
        run_scheduled(settings, redis_conn, run_worker)
    assert links(app)[gus] == "gus@x.io"
    with app.extensions["leadpulse"].Session() as s:
        assert s.execute(select(HubSpotContact.failure).where(HubSpotContact.failure.is_not(None))).all() == []
    assert fake.contacts[hal]["properties"].get("engagement_score") == "0"


def test_a_revoked_token_keeps_creations_waiting_for_a_working_one(hooked, run_worker, monkeypatch):
    fake, client, api, app, src = hooked
    monkeypatch.setenv("HUBSPOT_API_BASE", fake.url)
    fin = fake.add_contact("fin@x.io")
    fake.tokens.discard(TOKEN)
    r = deliver(client, src["url"], [{"objectId": int(fin), "eventId": 1, "subscriptionType": "contact.creation"}])
    assert r.status_code == 200 and r.json == {"applied": 0, "pending": 1, "duplicate": 0, "ignored": 0}
    fake.add_token("pat-na1-new-0123456789")
    assert api.put("/integrations/hubspot", json={"access_token": "pat-na1-new-0123456789"}).status_code == 200
    run_worker()
    assert links(app) == {fin: "fin@x.io"}
