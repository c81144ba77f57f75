"""Connecting an OU to HubSpot (fake HubSpot over real HTTP, the real hubspot-api-client)."""

import dataclasses

import pytest
from sqlalchemy import select

from models.hubspot import HubSpotConnection
from tests.conftest import Api
from tests.fakes import FakeHubSpot
from tests.helpers import create_levels
from webapp import create_app

TOKEN = "pat-na1-0123456789abcdef"


@pytest.fixture
def fake_hubspot():
    with FakeHubSpot(tokens=[TOKEN, "pat-other-0123456789"]) as fake:
        yield fake


@pytest.fixture
def hs_api(settings, clean, tenant, fake_hubspot):
    app = create_app(dataclasses.replace(settings, hubspot_api_base=fake_hubspot.url))
    app.testing = True
    return Api(app.test_client(), tenant), app


def stored(app, unit_id):
    with app.extensions["leadpulse"].Session() as s:
        return s.execute(select(HubSpotConnection).where(HubSpotConnection.unit_id == unit_id)).scalar()


def test_connect_checks_token_creates_properties_and_stores_it_encrypted(hs_api, fake_hubspot, tenant):
    api, app = hs_api
    create_levels(api)
    assert api.get("/integrations/hubspot").json["connected"] is False
    r = api.put("/integrations/hubspot", json={"access_token": TOKEN})
    assert r.status_code == 200, r.json
    body = r.json
    assert (
        body["connected"] is True and body["portal_id"] == fake_hubspot.portal_id and body["properties_ready"] is True
    )
    assert TOKEN not in r.get_data(as_text=True)
    assert "leadpulse" in fake_hubspot.groups
    props = fake_hubspot.properties
    assert props["engagement_score"]["type"] == "number"
    assert props["engagement_level_changed_at"]["type"] == "datetime"
    assert props["engagement_top_drivers"]["groupName"] == "leadpulse"
    assert [o["label"] for o in props["engagement_level"]["options"]] == ["Cold", "Warm", "Hot", "Very Hot"]
    conn = stored(app, tenant.unit_id)
    assert conn.token_encrypted and TOKEN not in conn.token_encrypted
    from integrations.secretbox import decrypt

    assert decrypt(app.extensions["leadpulse"].secret_key, "hubspot-token", conn.token_encrypted) == TOKEN
    got = api.get("/integrations/hubspot")
    assert got.json["token_source"] == "ou" and TOKEN not in got.get_data(as_text=True)


def test_reconnecting_is_idempotent_and_updates_level_options(hs_api, fake_hubspot):
    api, _ = hs_api
    ids = create_levels(api)
    assert api.put("/integrations/hubspot", json={"access_token": TOKEN}).status_code == 200
    api.put(f"/engagement-levels/{ids['Very Hot']}", json={"name": "On Fire"})
    r = api.put("/integrations/hubspot", json={"access_token": TOKEN, "create_missing_contacts": True})
    assert r.status_code == 200 and r.json["create_missing_contacts"] is True
    assert [o["label"] for o in fake_hubspot.properties["engagement_level"]["options"]] == [
        "Cold",
        "Warm",
        "Hot",
        "On Fire",
    ]
    assert list(fake_hubspot.groups).count("leadpulse") == 1


def test_bad_token_and_hubspot_down_leave_stored_state_unchanged(hs_api, fake_hubspot, tenant):
    api, app = hs_api
    assert api.put("/integrations/hubspot", json={"access_token": TOKEN}).status_code == 200
    before = stored(app, tenant.unit_id).token_encrypted
    r = api.put("/integrations/hubspot", json={"access_token": "pat-wrong-0000000000"})
    assert (
        r.status_code == 400
        and r.json["error"]["code"] == "invalid_token"
        and "access_token" in r.json["error"]["details"]
    )
    fake_hubspot.fail_next(3, 503)
    r = api.put("/integrations/hubspot", json={"access_token": "pat-other-0123456789"})
    assert r.status_code == 502 and r.json["error"]["code"] == "hubspot_unavailable"
    assert stored(app, tenant.unit_id).token_encrypted == before
    fake_hubspot.clear_faults()
    for body, field in [
        ({}, "access_token"),
        ({"access_token": "short"}, "access_token"),
        ({"access_token": "pat-na1-令牌-0123456789"}, "access_token"),  # not latin-1: requests could not send it (500)
        ({"access_token": "pat-na1 0123456789"}, "access_token"),
        ({"access_token": TOKEN, "create_missing_contacts": "maybe"}, "create_missing_contacts"),
    ]:
        r = api.put("/integrations/hubspot", json=body)
        assert r.status_code == 400 and field in r.json["error"]["details"]


def test_disconnect_and_isolation(hs_api, client, other_tenant, tenant):
    api, app = hs_api
    assert api.put("/integrations/hubspot", json={"access_token": TOKEN}).status_code == 200
    other = Api(app.test_client(), other_tenant)
    assert other.get("/integrations/hubspot").json["connected"] is False
    assert other.delete("/integrations/hubspot").status_code == 404
    assert api.delete("/integrations/hubspot").status_code == 204
    assert api.get("/integrations/hubspot").json["connected"] is False
    assert stored(app, tenant.unit_id) is None


def test_environment_token_serves_ous_without_their_own(settings, clean, tenant, fake_hubspot):
    app = create_app(dataclasses.replace(settings, hubspot_api_base=fake_hubspot.url, hubspot_access_token=TOKEN))
    r = Api(app.test_client(), tenant).get("/integrations/hubspot")
    assert r.json["connected"] is True and r.json["token_source"] == "environment"
    assert TOKEN not in r.get_data(as_text=True)


def test_level_changes_keep_hubspot_options_current(hs_api, fake_hubspot, monkeypatch, run_worker, redis_conn, tenant):
    api, app = hs_api
    monkeypatch.setenv("HUBSPOT_API_BASE", fake_hubspot.url)  # the worker reads its settings from the environment
    ids = create_levels(api)
    assert api.put("/integrations/hubspot", json={"access_token": TOKEN}).status_code == 200
    assert api.get("/integrations/hubspot").json["level_options_current"] is True

    def options():
        return [o["label"] for o in fake_hubspot.properties["engagement_level"]["options"]]

    assert api.put(f"/engagement-levels/{ids['Very Hot']}", json={"name": "On Fire"}).status_code == 200
    assert api.get("/integrations/hubspot").json["level_options_current"] is False
    run_worker()
    assert options() == ["Cold", "Warm", "Hot", "On Fire"]
    assert api.get("/integrations/hubspot").json["level_options_current"] is True

    # HubSpot down: the job fails (RQ retries later), the status says why, nothing is marked current
    fake_hubspot.fail_next(10, 503)
    assert api.delete(f"/engagement-levels/{ids['Cold']}").status_code == 204
    run_worker()
    status = api.get("/integrations/hubspot").json
    assert status["level_options_current"] is False and "503" in status["last_error"]
    assert "Cold" in options()
    # HubSpot back, Redis lost the retry: the sweep finds the stale options and the next job fixes them
    fake_hubspot.clear_faults()
    redis_conn.flushdb()
    from models.db import session_factory
    from worker.sweep import sweep_once

    settings = app.extensions["leadpulse"].settings
    sweep_once(session_factory(settings.database_url), redis_conn, settings.queue_name, settings.scoring_parallelism)
    run_worker()
    assert options() == ["Warm", "Hot", "On Fire"]
    status = api.get("/integrations/hubspot").json
    assert status["level_options_current"] is True and status["last_error"] is None
