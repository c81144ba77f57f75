"""Who may do what: every route against every role and scope (the role matrix), sessions, members and credentials."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import jwt
import pytest
from sqlalchemy import select, update

from models.base import utcnow
from models.tenancy import ApiCredential, MemberSession
from tests.auth_helpers import member_client
from tests.conftest import basic, make_tenant
from webapp import access

ORIGIN = "https://www.example.com"
PASSWORD = "a long enough password"


@dataclass
class Caller:
    name: str
    headers: dict
    role: str | None = None
    scopes: frozenset | None = None
    write_key: bool = False

    def may(self, need: str, browser: bool, member_only: bool) -> bool:
        """What the table in webapp/access.py promises this caller."""
        if self.write_key and not browser:
            return False
        if need == "caller":
            return True
        if (need == "member" or member_only) and self.role is None:
            return False
        return need == "member" or need in access.grants(self.role, self.scopes)


def add_member(client, owner: dict, role: str, email: str) -> dict:
    body = {"first_name": role, "email": email, "password": PASSWORD, "role": role}
    r = client.post("/org-members", json=body, headers=owner)
    assert r.status_code == 201, r.json
    return r.json


def login_as(client, email: str, unit_id: str) -> dict:
    r = client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.json
    headers = {"Authorization": f"Bearer {r.json['token']}"}
    client.set_cookie("activeOu", unit_id)
    return headers


def credential(client, owner: dict, **body) -> dict:
    r = client.post("/secrets", json={"name": "key", **body}, headers=owner)
    assert r.status_code == 201, r.json
    return r.json


@pytest.fixture
def callers(client, tenant):
    owner = member_client(client, tenant)
    found = [Caller("Owner", owner, role="Owner")]
    for role in ("Operator", "Viewer"):
        add_member(client, owner, role, f"{role.lower()}@example.com")
        found.append(Caller(role, login_as(client, f"{role.lower()}@example.com", tenant.unit_id), role=role))
    for scope in ("ingest", "read", "admin"):
        made = credential(client, owner, scopes=[scope])
        found.append(Caller(f"{scope} key", basic(made["client_id"], made["client_secret"]), scopes=frozenset({scope})))
    key = credential(client, owner, allowed_origins=[ORIGIN])
    write_key = {**basic(key["client_id"], ""), "Origin": ORIGIN}
    found.append(Caller("write key", write_key, scopes=frozenset({"ingest"}), write_key=True))
    return found


def routes(app):
    """(path, method, view) for every route and method the app serves, ids filled with ones that exist nowhere."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(("api-docs.", "static")):
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.rule, method, app.view_functions[rule.endpoint]


LEAVES_THE_CALLER_SIGNED_OUT = {("/auth/logout", "POST")}  # tried in its own tests below


def test_every_route_lets_exactly_the_roles_and_scopes_the_table_names(app, client, tenant, callers):
    tried = 0
    for rule, method, view in routes(app):
        need = access.need_of(view, method)
        if need is None or (rule, method) in LEAVES_THE_CALLER_SIGNED_OUT:
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: tenant.unit_id if m[1] == "unit_id" else "no-such-id", rule)
        browser, member_only = access.browser_allowed(view, method), access.member_only(view, method)
        for caller in callers:
            client.set_cookie("activeOu", tenant.unit_id)
            body = {} if method in ("POST", "PUT", "PATCH") else None
            r = client.open(path, method=method, json=body, headers=caller.headers, buffered=False)
            status, payload = r.status_code, (r.get_data() if r.status_code == 403 else b"")
            r.close()
            where = f"{caller.name}: {method} {rule} (needs {need})"
            if caller.may(need, browser, member_only):
                assert status != 403, f"{where} was refused: {payload!r}"
                assert status != 401, where
            else:  # the API's JSON names the code; a console page (/app) names it in data-error-code="forbidden"
                assert status == 403 and b'"forbidden"' in payload, f"{where} answered {status}"
            tried += 1
    assert tried > 100 * len(callers) // 2


# What the issue asked for, stated without the table, so a change to the table that breaks it fails here.
PROMISES = [
    ("Viewer", "GET", "/leads", True),
    ("Viewer", "PUT", "/integrations/hubspot", False),
    ("Viewer", "POST", "/ingest", False),
    ("Viewer", "GET", "/integrations/slack/install", False),  # a GET that starts an install
    ("Viewer", "GET", "/org-units/{unit}/memberships", False),  # emails and roles: as /org-members
    ("read key", "GET", "/org-units/{unit}/memberships", False),
    ("Operator", "PUT", "/integrations/hubspot", True),
    ("Operator", "POST", "/rulesets/x/publish", True),
    ("Operator", "POST", "/secrets", False),
    ("Operator", "POST", "/org-members", False),
    ("Owner", "POST", "/secrets", True),
    ("ingest key", "POST", "/ingest", True),
    ("ingest key", "GET", "/leads", False),
    ("ingest key", "PUT", "/integrations/hubspot", False),
    ("ingest key", "DELETE", "/events/batch", False),
    ("ingest key", "POST", "/rulesets/x/publish", False),
    ("read key", "GET", "/events/export", True),
    ("read key", "POST", "/ingest", False),
    ("admin key", "PUT", "/integrations/hubspot", True),
    ("admin key", "POST", "/secrets", False),
    ("admin key", "POST", "/org-members", False),
    ("write key", "POST", "/ingest/batch", True),
    ("write key", "GET", "/leads", False),
    ("write key", "POST", "/import", False),
]


def test_the_issue_s_promises_hold(client, tenant, callers):
    for who, method, path, allowed in PROMISES:
        caller = next(c for c in callers if c.name == who)
        client.set_cookie("activeOu", tenant.unit_id)
        path = path.replace("{unit}", tenant.unit_id)
        r = client.open(path, method=method, json={} if method != "GET" else None, headers=caller.headers)
        assert (r.status_code != 403) == allowed, (who, method, path, r.status_code, r.get_data())


def test_a_refusal_says_what_is_needed(client, tenant, callers):
    viewer = next(c for c in callers if c.name == "Viewer")
    r = client.put("/integrations/hubspot", json={"access_token": "x"}, headers=viewer.headers)
    assert r.status_code == 403 and "Operator or Owner" in r.json["error"]["message"]
    key = next(c for c in callers if c.name == "ingest key")
    r = client.get("/leads", headers=key.headers)
    assert r.status_code == 403 and "read or admin scope" in r.json["error"]["message"]


# Sessions


def test_logout_ends_that_session_only_and_everywhere_at_once(client, app, tenant):
    first, second = member_client(client, tenant), member_client(client, tenant)
    other_process = app.test_client()  # no shared memory: a revocation lives in the database
    other_process.set_cookie("activeOu", tenant.unit_id)
    assert other_process.get("/leads", headers=first).status_code == 200
    r = client.post("/auth/logout", headers=first)
    assert r.status_code == 204
    for c in (client, other_process):
        r = c.get("/leads", headers=first)
        assert r.status_code == 401 and "ended" in r.json["error"]["message"]
    client.set_cookie("activeOu", tenant.unit_id)  # logout cleared this browser's cookie, shared by both here
    assert client.get("/leads", headers=second).status_code == 200
    assert client.post("/auth/logout", headers=basic(tenant.client_id, tenant.client_secret)).status_code == 403


def test_tokens_are_short_lived_and_expire_with_their_session(client, app, tenant):
    r = client.post("/auth/login", json={"email": tenant.email, "password": tenant.password})
    token = r.json["token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 60 * 60 and claims["jti"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/me", headers=headers).status_code == 200
    with app.extensions["leadpulse"].WriterSession() as s, s.begin():
        s.execute(update(MemberSession).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert client.get("/me", headers=headers).status_code == 401


def test_a_token_without_a_session_is_refused(client, app, tenant):
    r = client.post("/auth/login", json={"email": tenant.email, "password": tenant.password})
    claims = jwt.decode(r.json["token"], options={"verify_signature": False})
    secret = app.extensions["leadpulse"].secret_key
    for forged in ({k: v for k, v in claims.items() if k != "jti"}, {**claims, "jti": "not-a-session"}):
        token = jwt.encode(forged, secret, algorithm="HS256")
        assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401


# Members and roles


def test_owners_add_members_with_a_role_and_change_it(client, tenant):
    owner = member_client(client, tenant)
    made = add_member(client, owner, "Viewer", "vera@example.com")
    assert made["role"] == "Viewer" and "password" not in made
    listed = client.get("/org-members", headers=owner).json
    assert {(m["email"], m["role"]) for m in listed} == {(tenant.email, "Owner"), ("vera@example.com", "Viewer")}
    vera = login_as(client, "vera@example.com", tenant.unit_id)
    assert client.put("/engagement-levels/x", json={}, headers=vera).status_code == 403
    r = client.put(f"/org-members/{made['org_member_id']}", json={"role": "Operator"}, headers=owner)
    assert r.status_code == 200 and r.json["role"] == "Operator"
    assert client.put("/engagement-levels/x", json={}, headers=vera).status_code == 404  # allowed now: no such level
    r = client.get("/me", headers=vera)
    assert r.json["role"] == "Operator" and r.json["active_ou"] == tenant.unit_id


def test_member_input_is_checked_field_by_field(client, tenant):
    owner = member_client(client, tenant)
    add_member(client, owner, "Viewer", "vera@example.com")
    cases = [
        ({"first_name": "V", "email": "vera@example.com", "password": PASSWORD}, 409, None),
        ({"first_name": "V", "email": "x@example.com", "password": PASSWORD, "role": "King"}, 400, "role"),
        ({"first_name": "V", "email": "not-an-email", "password": PASSWORD}, 400, "email"),
        ({"first_name": "V", "email": "y@example.com"}, 400, "password"),
        ({"first_name": "V", "email": "z@example.com", "password": "short"}, 400, None),
    ]
    for body, status, field in cases:
        r = client.post("/org-members", json=body, headers=owner)
        assert r.status_code == status, (body, r.json)
        if field:
            assert field in r.json["error"]["details"], r.json


def test_an_ou_always_keeps_an_owner(client, tenant):
    owner = member_client(client, tenant)
    me = client.get("/me", headers=owner).json["org_member_id"]
    r = client.put(f"/org-units/{tenant.unit_id}/memberships/{me}", json={"role": "Viewer"}, headers=owner)
    assert r.status_code == 409 and "Owner" in r.json["error"]["message"]
    assert client.delete(f"/org-units/{tenant.unit_id}/memberships/{me}", headers=owner).status_code == 409
    assert client.delete(f"/org-members/{me}", headers=owner).status_code == 400
    second = add_member(client, owner, "Owner", "olga@example.com")
    r = client.put(f"/org-units/{tenant.unit_id}/memberships/{me}", json={"role": "Viewer"}, headers=owner)
    assert r.status_code == 200 and r.json["role"] == "Viewer"
    assert client.post("/org-members", json={}, headers=owner).status_code == 403  # a Viewer now
    olga = login_as(client, "olga@example.com", tenant.unit_id)
    assert client.get("/org-members", headers=olga).status_code == 200
    assert second["role"] == "Owner"


def test_removing_a_member_ends_its_sessions(client, tenant):
    owner = member_client(client, tenant)
    made = add_member(client, owner, "Operator", "otto@example.com")
    otto = login_as(client, "otto@example.com", tenant.unit_id)
    assert client.get("/leads", headers=otto).status_code == 200
    assert client.delete(f"/org-members/{made['org_member_id']}", headers=owner).status_code == 204
    assert client.get("/leads", headers=otto).status_code == 401
    assert client.post("/auth/login", json={"email": "otto@example.com", "password": PASSWORD}).status_code == 401


def test_removing_the_last_membership_ends_the_sessions_and_a_role_change_applies_at_once(client, tenant):
    owner = member_client(client, tenant)
    made = add_member(client, owner, "Operator", "otto@example.com")
    otto = login_as(client, "otto@example.com", tenant.unit_id)
    path = f"/org-units/{tenant.unit_id}/memberships/{made['org_member_id']}"
    assert client.put(path, json={"role": "Viewer"}, headers=owner).status_code == 200
    assert client.delete("/events/batch", json={"ids": ["1"]}, headers=otto).status_code == 403
    assert client.delete(path, headers=owner).status_code == 204
    assert client.get("/org-units", headers=otto).status_code == 401


def test_memberships_across_the_organization_s_units(client, tenant, settings):
    owner = member_client(client, tenant)
    second = client.post("/org-units", json={"name": "Second"}, headers=owner).json["unit_id"]
    made = add_member(client, owner, "Viewer", "vera@example.com")
    member_id = made["org_member_id"]
    r = client.post(f"/org-units/{second}/memberships", json={"org_member_id": member_id}, headers=owner)
    assert r.status_code == 200 and r.json["role"] == "Viewer"
    r = client.post(
        f"/org-units/{second}/memberships", json={"org_member_id": member_id, "role": "Operator"}, headers=owner
    )
    assert r.status_code == 200 and r.json["role"] == "Operator"  # again: only the role changes
    listed = client.get(f"/org-units/{second}/memberships", headers=owner).json
    assert {m["email"]: m["role"] for m in listed} == {tenant.email: "Owner", "vera@example.com": "Operator"}
    vera = login_as(client, "vera@example.com", tenant.unit_id)
    assert (
        client.post(f"/org-units/{second}/memberships", json={"org_member_id": member_id}, headers=vera).status_code
        == 403
    )
    # Another organization: its OU is a 404 and its members cannot be assigned here.
    other = make_tenant(settings, org="Globex", unit="East")
    stranger = member_client(client, other)
    theirs = client.get("/me", headers=stranger).json["org_member_id"]
    r = client.post(f"/org-units/{second}/memberships", json={"org_member_id": theirs}, headers=owner)
    assert r.status_code == 404
    for method in ("get", "post"):
        r = getattr(client, method)(
            f"/org-units/{second}/memberships", json={"org_member_id": member_id}, headers=stranger
        )
        assert r.status_code == 404
    client.set_cookie("activeOu", other.unit_id)
    assert client.delete(f"/org-members/{member_id}", headers=stranger).status_code == 404


# Credentials


def test_credentials_carry_scopes_expiry_and_last_use(client, app, tenant):
    owner = member_client(client, tenant)
    made = credential(client, owner)
    assert made["scopes"] == ["ingest"] and made["kind"] == "secret" and made["last_used_at"] is None
    key = basic(made["client_id"], made["client_secret"])
    event = {"lead_id": "l1", "event_type": "page_view"}
    assert client.post("/ingest", json=event, headers=key).status_code == 202
    listed = {c["client_id"]: c for c in client.get("/secrets", headers=owner).json}
    assert listed[made["client_id"]]["last_used_at"] is not None and "client_secret" not in listed[made["client_id"]]
    soon = (utcnow() + timedelta(days=1)).isoformat()
    assert credential(client, owner, expires_at=soon)["expires_at"] is not None
    with app.extensions["leadpulse"].WriterSession() as s, s.begin():
        s.execute(
            update(ApiCredential)
            .where(ApiCredential.client_id == made["client_id"])
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    from webapp.auth import forget_credential

    forget_credential(made["client_id"])  # as a process that has not looked it up in the last few seconds
    assert client.post("/ingest", json=event, headers=key).status_code == 401
    wrong = basic(made["client_id"], "wrong secret")
    with app.extensions["leadpulse"].WriterSession() as s, s.begin():
        s.execute(update(ApiCredential).values(last_used_at=None))
    forget_credential(made["client_id"])
    assert client.post("/ingest", json=event, headers=wrong).status_code == 401
    listed = {c["client_id"]: c for c in client.get("/secrets", headers=owner).json}
    assert listed[made["client_id"]]["last_used_at"] is None  # a failed attempt is not a use
    for body, field in (
        ({"name": "   "}, "name"),
        ({"allowed_origins": ["http://[::1"]}, "allowed_origins"),
        ({"allowed_origins": ["https://a.example:99999"]}, "allowed_origins"),
        ({"allowed_origins": ["http://exa mple.com"]}, "allowed_origins"),
        ({"allowed_origins": ["https://user@a.example"]}, "allowed_origins"),
        ({"scopes": ["root"]}, "scopes.0"),
        ({"scopes": []}, "scopes"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"allowed_origins": ["javascript:alert(1)"]}, "allowed_origins"),
        ({"allowed_origins": ["https://a.example/path"]}, "allowed_origins"),
        ({"allowed_origins": [ORIGIN], "scopes": ["admin"]}, "scopes"),
    ):
        r = client.post("/secrets", json={"name": "k", **body}, headers=owner)
        assert r.status_code == 400 and field in r.json["error"]["details"], (body, r.json)


def test_a_write_key_sends_events_from_its_origins_only(client, app, tenant):
    owner = member_client(client, tenant)
    made = credential(client, owner, allowed_origins=[ORIGIN, "http://localhost:3000", "HTTPS://Shop.Example:443"])
    assert made["allowed_origins"] == [ORIGIN, "http://localhost:3000", "https://shop.example"]  # as browsers send it
    assert made["kind"] == "write_key" and made["client_secret"] is None and made["client_id"].startswith("lpw_")
    with app.extensions["leadpulse"].Session() as s:
        stored = s.execute(select(ApiCredential.secret_hash).where(ApiCredential.client_id == made["client_id"]))
        assert stored.scalar() == ""
    key = basic(made["client_id"], "")
    event = {"lead_id": "l1", "event_type": "page_view"}
    pre = client.options("/ingest", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"})
    assert (
        pre.headers["Access-Control-Allow-Origin"] == ORIGIN
        and "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    )
    r = client.post("/ingest", json=event, headers={**key, "Origin": ORIGIN})
    assert r.status_code == 202 and r.headers["Access-Control-Allow-Origin"] == ORIGIN
    for origin in ("https://evil.example", None):
        r = client.post("/ingest", json=event, headers={**key, **({"Origin": origin} if origin else {})})
        assert r.status_code == 403 and "Access-Control-Allow-Origin" not in r.headers
    assert (
        client.post("/ingest", json=event, headers={**basic(made["client_id"], "guess"), "Origin": ORIGIN}).status_code
        == 401
    )
    assert client.get("/leads", headers={**key, "Origin": ORIGIN}).status_code == 403


def test_a_client_id_we_never_issued_costs_no_database_query(app, client, tenant):
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    assert client.get("/leads", headers=tenant.auth).status_code == 200
    # Once per process: whether untagged ids from before tags exist at all.
    assert client.get("/leads", headers=basic("lp_" + "c" * 24, "x")).status_code == 401
    made_up = [
        "lpk_" + "0" * 32,  # our shape, a tag that does not match
        tenant.client_id[:-1] + ("0" if tenant.client_id[-1] != "0" else "1"),
        "lp_" + "a" * 24,  # the untagged shape of old ids, while none exist
        "anything",
    ]
    statements = []

    def count(*_args):
        statements.append(1)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        for client_id in made_up:
            r = client.get("/leads", headers=basic(client_id, tenant.client_secret))
            assert r.status_code == 401 and r.json["error"]["code"] == "unauthorized"
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert statements == []


def test_untagged_client_ids_from_before_tags_still_work(settings, clean, tenant):
    from models.accounts import hash_secret
    from webapp import create_app

    with create_app(settings).extensions["leadpulse"].WriterSession() as s, s.begin():
        s.add(
            ApiCredential(
                org_id=tenant.org_id,
                unit_id=tenant.unit_id,
                name="old",
                client_id="lp_" + "b" * 24,
                secret_hash=hash_secret("old-secret"),
                scopes="ingest read admin",
            )
        )
    app = create_app(settings)  # a process started after the upgrade
    r = app.test_client().get("/leads", headers=basic("lp_" + "b" * 24, "old-secret"))
    assert r.status_code == 200


def test_two_owners_removing_each_other_at_once_leave_one(app, client, tenant):
    from concurrent.futures import ThreadPoolExecutor

    owner = member_client(client, tenant)
    olga = add_member(client, owner, "Owner", "olga@example.com")
    me = client.get("/me", headers=owner).json["org_member_id"]
    olga_headers = login_as(client, "olga@example.com", tenant.unit_id)

    def remove(headers, member_id):
        c = app.test_client()
        c.set_cookie("activeOu", tenant.unit_id)
        return c.delete(f"/org-units/{tenant.unit_id}/memberships/{member_id}", headers=headers).status_code

    for _ in range(3):  # a race: a few tries, each must leave an Owner
        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(pool.map(remove, (owner, olga_headers), (olga["org_member_id"], me)))
        owners = [m for m in client.get(f"/org-units/{tenant.unit_id}/memberships", headers=owner).json or []]
        # One removes the other; the other is refused (409, the last Owner) or, if it came second, is no longer in the
        # OU at all (404), or signed out altogether (401: losing its last membership ended its sessions). Both at
        # once would have left no Owner.
        assert statuses in ([204, 409], [204, 404], [204, 401], [409, 409]), statuses
        if statuses[0] == 204:
            break
    survivors = {
        m["email"]
        for h in (owner, olga_headers)
        for m in (lambda r: r.json if r.status_code == 200 else [])(
            client.get(f"/org-units/{tenant.unit_id}/memberships", headers=h)
        )
        if m["role"] == "Owner"
    }
    assert len(survivors) == 1 and owners is not None


def test_only_an_owner_of_every_ou_sets_the_organization_s_slack_app(client, tenant):
    owner = member_client(client, tenant)
    body = {"client_id": "123.456", "client_secret": "a-long-enough-app-secret"}
    assert client.put("/settings/slack-app", json=body, headers=owner).status_code == 200
    second = client.post("/org-units", json={"name": "Second"}, headers=owner).json["unit_id"]
    mallory = add_member(client, owner, "Owner", "mallory@example.com")  # Owner of Main only
    headers = login_as(client, "mallory@example.com", tenant.unit_id)
    r = client.put("/settings/slack-app", json={**body, "client_id": "666.666"}, headers=headers)
    assert r.status_code == 403 and "every organization unit" in r.json["error"]["message"]
    assert client.get("/settings/slack-app", headers=owner).json["client_id"] == "123.456"
    assert mallory["role"] == "Owner" and second
