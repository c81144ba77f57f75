"""Every JSON endpoint: malformed JSON, wrong content type and non-object bodies are clean 4xx, never 500."""

import io

import pytest
from sqlalchemy import func, select

from models.events import Event
from models.leads import Lead
from models.levels import EngagementLevel
from models.scoring import Rule, Ruleset
from models.tenancy import ApiCredential, OrgUnit
from tests.auth_helpers import member_client

JSON_ENDPOINTS = [
    ("post", "/ingest"),
    ("post", "/events"),
    ("post", "/engagement-levels"),
    ("put", "/engagement-levels/{level}"),
    ("post", "/rulesets"),
    ("put", "/rulesets/{ruleset}"),
    ("post", "/rules"),
    ("put", "/rules/{rule}"),
    ("post", "/leads"),
    ("post", "/leads/scores"),
    ("post", "/auth/login"),
    ("post", "/org-units"),
    ("put", "/org-units/{unit}"),
    ("post", "/org-units/active"),
    ("post", "/secrets"),
]


def snapshot(app):
    with app.extensions["leadpulse"].Session() as s:
        return tuple(
            s.execute(select(func.count()).select_from(m)).scalar()
            for m in (Event, Lead, EngagementLevel, Ruleset, Rule, ApiCredential, OrgUnit)
        )


@pytest.fixture
def ids(api, tenant):
    level = api.post("/engagement-levels", json={"name": "Cold", "min_score": 0, "max_score": 10}).json["id"]
    ruleset = api.post("/rulesets", json={"name": "R"}).json["ruleset_id"]
    rule = api.post("/rules", json={"ruleset_id": ruleset, "event_type": "x", "weight": 1}).json["rule_id"]
    return {"level": level, "ruleset": ruleset, "rule": rule, "unit": tenant.unit_id}


@pytest.mark.parametrize("method,path", JSON_ENDPOINTS)
def test_malformed_wrong_type_and_non_object(method, path, client, tenant, ids, app):
    headers = member_client(client, tenant)
    url = path.format(**ids)
    before = snapshot(app)
    call = getattr(client, method)
    r = call(url, data='{"name": "x",', headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json["error"]["code"] == "malformed_json", r.json
    r = call(url, data="name=x", headers={**headers, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415 and r.json["error"]["code"] == "unsupported_media_type"
    r = call(url, json=["not", "an", "object"], headers=headers)
    assert r.status_code == 400 and "body" in r.json["error"]["details"], r.json
    r = call(url, json="just a string", headers=headers)
    assert r.status_code == 400
    assert snapshot(app) == before


def test_an_operation_that_takes_no_body_refuses_one_it_would_ignore(client, tenant, ids, app):
    """Publish, revert, resync...: a malformed body is malformed JSON, anything but {} is named, nothing is done;
    no body or {} works."""
    headers = member_client(client, tenant)
    bodyless = [
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        for method in getattr(app.view_functions[rule.endpoint], "_bodyless", ())
    ]
    assert ("/rulesets/<obj_id>/publish", "POST") in bodyless and len(bodyless) >= 9, bodyless
    before = snapshot(app)
    for rule, method in bodyless:
        url = rule.replace("<", "").replace(">", "")  # any id: the body is looked at before the view
        for body, code in (("{", "malformed_json"), ("[1]", "validation_error"), ('{"name": "x"}', "validation_error")):
            r = client.open(url, method=method, data=body, headers={**headers, "Content-Type": "application/json"})
            assert r.status_code == 400 and r.json["error"]["code"] == code, (rule, body, r.json)
    assert snapshot(app) == before
    publish = f"/rulesets/{ids['ruleset']}/publish"
    r = client.post(publish, data="{", headers={"Content-Type": "application/json"})  # who calls comes first
    assert r.status_code == 401, r.json
    assert client.post(publish, json={}, headers=headers).status_code == 200
    assert client.post(publish, data="null", headers={**headers, "Content-Type": "application/json"}).status_code == 200
    chunked = {**headers, "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    assert client.post(publish, input_stream=io.BytesIO(b""), headers=chunked).status_code == 200  # empty: no body
    huge = '{"x": "' + "a" * (3 << 20) + '"}'
    r = client.post(publish, data=huge, headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 413, r.json  # documented, as for every operation that may be sent a body
