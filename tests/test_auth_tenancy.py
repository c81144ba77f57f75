"""Auth (Basic credentials, member JWT), org units, active OU, secrets, and the tenant boundary."""

import base64

import jwt
import pytest
from sqlalchemy import select

from models.tenancy import ApiCredential
from tests.conftest import Api, basic, make_tenant
from tests.helpers import create_levels, ingest, published_ruleset


def login(client, tenant) -> dict:
    r = client.post("/auth/login", json={"email": tenant.email, "password": tenant.password})
    assert r.status_code == 200, r.json
    return {"Authorization": f"Bearer {r.json['token']}"}


def activate(client, bearer, unit_id):
    r = client.post("/org-units/active", json={"ouId": unit_id}, headers=bearer)
    assert r.status_code == 200, r.json
    assert "HttpOnly" in r.headers["Set-Cookie"] and "activeOu=" in r.headers["Set-Cookie"]
    return r


def test_missing_bad_and_malformed_credentials(client, tenant):
    assert client.get("/leads").status_code == 401
    r = client.get("/leads", headers=basic(tenant.client_id, "wrong"))
    assert r.status_code == 401 and r.json["error"]["code"] == "unauthorized"
    assert "WWW-Authenticate" in r.headers
    assert client.get("/leads", headers=basic("lp_nope", tenant.client_secret)).status_code == 401
    assert client.get("/leads", headers={"Authorization": "Basic !!!notbase64"}).status_code == 401
    assert client.get("/leads", headers={"Authorization": "Digest abc"}).status_code == 401
    assert client.get("/leads", headers={"Authorization": "Bearer not.a.jwt"}).status_code == 401
    assert client.get("/leads", headers=basic(tenant.client_id, tenant.client_secret)).status_code == 200


def test_expired_and_foreign_tokens_are_rejected(client, tenant):
    bad = jwt.encode({"sub": "x", "exp": 1}, "another-signing-key-that-is-not-ours-0123456789", algorithm="HS256")
    assert client.get("/me", headers={"Authorization": f"Bearer {bad}"}).status_code == 401


def test_login_me_and_wrong_password(client, tenant):
    r = client.post("/auth/login", json={"email": tenant.email, "password": "nope"})
    assert r.status_code == 401
    r = client.post("/auth/login", json={"email": "ghost@example.com", "password": "nope"})
    assert r.status_code == 401
    r = client.post("/auth/login", json={"email": "not-an-email", "password": "x"})
    assert r.status_code == 400 and "email" in r.json["error"]["details"]
    bearer = login(client, tenant)
    me = client.get("/me", headers=bearer)
    assert me.status_code == 200 and me.json["email"] == tenant.email and me.json["active_ou"] is None
    assert me.json["org_member_id"] and me.json["org_id"] == tenant.org_id and me.json["role"] is None  # no OU yet
    activate(client, bearer, tenant.unit_id)
    assert client.get("/me", headers=bearer).json["role"] == "Owner"
    # An API credential is not a member
    assert client.get("/me", headers=basic(tenant.client_id, tenant.client_secret)).status_code == 403


def test_member_needs_active_ou_then_works(client, tenant):
    bearer = login(client, tenant)
    r = client.get("/leads", headers=bearer)
    assert r.status_code == 400 and r.json["error"]["code"] == "no_active_ou"
    assert "org-units/active" in r.json["error"]["message"]
    activate(client, bearer, tenant.unit_id)
    assert client.get("/leads", headers=bearer).status_code == 200
    assert client.get("/me", headers=bearer).json["active_ou"] == tenant.unit_id


def test_org_units_create_rename_and_membership(client, tenant, other_tenant):
    bearer = login(client, tenant)
    r = client.get("/org-units", headers=bearer)
    assert [u["unit_id"] for u in r.json["units"]] == [tenant.unit_id]
    assert r.json["organization"]["org_id"] == tenant.org_id
    r = client.post("/org-units", json={"name": "EMEA Sales"}, headers=bearer)
    assert r.status_code == 400 and r.json["error"]["code"] == "no_active_ou"  # Owner of which OU?
    activate(client, bearer, tenant.unit_id)
    r = client.post("/org-units", json={"name": "EMEA Sales"}, headers=bearer)
    assert r.status_code == 201 and r.json["slug"] == "emea-sales"
    new_unit = r.json["unit_id"]
    r = client.post("/org-units", json={"name": "EMEA Sales"}, headers=bearer)
    assert r.json["slug"] == "emea-sales-2"
    r = client.put(f"/org-units/{new_unit}", json={"name": "EMEA"}, headers=bearer)
    assert r.status_code == 200 and r.json["name"] == "EMEA" and r.json["slug"] == "emea"
    assert client.put(f"/org-units/{new_unit}", json={"name": ""}, headers=bearer).status_code == 400
    assert client.post("/org-units", json={}, headers=bearer).status_code == 400
    # another org's OU: 404 for rename and for activation, and the cookie is not set
    assert client.put(f"/org-units/{other_tenant.unit_id}", json={"name": "x"}, headers=bearer).status_code == 404
    r = client.post("/org-units/active", json={"ouId": other_tenant.unit_id}, headers=bearer)
    assert r.status_code == 404 and "Set-Cookie" not in r.headers
    assert client.post("/org-units/active", json={}, headers=bearer).status_code == 400
    # credentials cannot manage OUs
    assert client.get("/org-units", headers=basic(tenant.client_id, tenant.client_secret)).status_code == 403


def test_forged_active_ou_cookie_selects_nothing(client, tenant, other_tenant):
    bearer = login(client, tenant)
    client.set_cookie("activeOu", other_tenant.unit_id)
    r = client.get("/leads", headers=bearer)
    assert r.status_code == 400 and r.json["error"]["code"] == "no_active_ou"


def test_secrets_shown_once_stored_hashed_and_revocable(client, tenant, app):
    bearer = login(client, tenant)
    activate(client, bearer, tenant.unit_id)
    r = client.post("/secrets", json={"name": "website tracker", "scopes": ["read"]}, headers=bearer)
    assert r.status_code == 201 and r.json["scopes"] == ["read"]
    secret, client_id, secret_id = r.json["client_secret"], r.json["client_id"], r.json["secret_id"]
    listed = client.get("/secrets", headers=bearer).json
    assert {s["secret_id"] for s in listed} == {secret_id, listed[0]["secret_id"]}
    assert all("client_secret" not in s for s in listed)
    with app.extensions["leadpulse"].Session() as s:
        stored = s.execute(select(ApiCredential.secret_hash).where(ApiCredential.client_id == client_id)).scalar()
    assert secret not in stored and len(stored) == 64
    assert client.get("/leads", headers=basic(client_id, secret)).status_code == 200
    assert client.delete(f"/secrets/{secret_id}", headers=bearer).status_code == 204
    assert client.get("/leads", headers=basic(client_id, secret)).status_code == 401
    assert client.delete(f"/secrets/{secret_id}", headers=bearer).status_code == 404
    for body in ({}, {"name": ""}, {"name": "x" * 51}, {"name": 5}):
        r = client.post("/secrets", json=body, headers=bearer)
        assert r.status_code == 400 and "name" in r.json["error"]["details"]


def test_credentials_cannot_mint_credentials(api):
    assert api.post("/secrets", json={"name": "x"}).status_code == 403
    assert api.get("/secrets").status_code == 403


def test_another_ous_objects_are_404(client, tenant, other_tenant, run_worker):
    mine, theirs = Api(client, tenant), Api(client, other_tenant)
    levels = create_levels(theirs)
    rs = published_ruleset(theirs, {"page_view": 5})
    rule_id = theirs.get("/rules").json[0]["rule_id"]
    ingest(theirs, "their-lead", "page_view")
    run_worker()
    bearer = login(client, other_tenant)
    activate(client, bearer, other_tenant.unit_id)
    cred_id = client.get("/secrets", headers=bearer).json[0]["secret_id"]

    lvl = levels["Hot"]
    for method, path, body in [
        ("put", f"/engagement-levels/{lvl}", {"name": "Mine"}),
        ("delete", f"/engagement-levels/{lvl}", None),
        ("get", f"/rulesets/{rs}", None),
        ("put", f"/rulesets/{rs}", {"name": "Mine"}),
        ("delete", f"/rulesets/{rs}", None),
        ("post", f"/rulesets/{rs}/publish", None),
        ("post", f"/rulesets/{rs}/unpublish", None),
        ("get", f"/rulesets/{rs}/rules", None),
        ("put", f"/rules/{rule_id}", {"weight": 100}),
        ("delete", f"/rules/{rule_id}", None),
        ("get", "/lead/their-lead", None),
        ("get", "/leads/their-lead", None),
        ("get", "/score/their-lead", None),
        ("get", "/leads/their-lead/score", None),
    ]:
        kwargs = {"json": body} if body is not None else {}
        r = getattr(mine, method)(path, **kwargs)
        assert r.status_code == 404, (method, path, r.json)
    # a rule pointing at their ruleset from my OU
    assert mine.post("/rules", json={"ruleset_id": rs, "event_type": "x", "weight": 1}).status_code == 404
    my_bearer = login(client, tenant)
    client.set_cookie("activeOu", tenant.unit_id)
    assert client.delete(f"/secrets/{cred_id}", headers=my_bearer).status_code == 404
    # nothing of theirs leaks into my lists, and nothing of theirs changed
    assert mine.get("/leads").json == []
    assert mine.get("/rules").json == [] and mine.get("/rulesets").json == []
    assert mine.get("/engagement-levels").json == {"levels": []}
    assert theirs.get("/leads").json[0]["score"] == 5
    assert len(theirs.get("/engagement-levels").json["levels"]) == 4
    assert mine.post("/leads/scores", json={"lead_ids": ["their-lead"]}).json[0]["found"] is False


@pytest.mark.parametrize("path", ["/", "/home", "/metrics", "/openapi.json"])
def test_public_endpoints_need_no_auth(client, path, clean):
    assert client.get(path).status_code == 200


def test_bootstrap_member_can_login_with_two_orgs(settings, client, clean):
    a = make_tenant(settings, org="A", unit="One", email="a@example.com")
    with pytest.raises(ValueError):
        make_tenant(settings, org="B", unit="Two", email="A@example.com")
    assert client.post("/auth/login", json={"email": "A@Example.com", "password": a.password}).status_code == 200
    encoded = base64.b64encode(f"{a.client_id}:{a.client_secret}".encode()).decode()
    assert client.get("/leads", headers={"Authorization": f"basic {encoded}"}).status_code == 200


def test_org_unit_names_that_lengthen_when_lowercased_get_a_slug_that_fits(client, tenant):
    """'İ' lowercases to two characters: 150 of them made a 299-character slug that PostgreSQL refused (a 500)."""
    bearer = login(client, tenant)
    activate(client, bearer, tenant.unit_id)
    slugs = []
    for name in ("İ" * 150, "x" * 200, "x" * 200):
        r = client.post("/org-units", json={"name": name}, headers=bearer)
        assert r.status_code == 201, r.json
        assert r.json["name"] == name and len(r.json["slug"]) <= 200
        slugs.append(r.json["slug"])
    assert len(set(slugs)) == 3  # the same long name twice: two slugs
    r = client.put(f"/org-units/{tenant.unit_id}", json={"name": "İ" * 200}, headers=bearer)
    assert r.status_code == 200 and len(r.json["slug"]) <= 200
