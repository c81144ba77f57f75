"""The console's Members page on the server: adding a login (or a member of another OU the Owner owns), changing a role,
removing a member, by the same services as /org-members and /org-units/{id}/memberships; the last Owner kept with
the API's own message beside the row; Owners only; CSRF; another OU's member a 404 page; bad input inline."""

from __future__ import annotations

import html
import re

from tests.auth_helpers import member_client
from tests.console_helpers import csrf_token, form_post, sign_in
from tests.tenant_world import unit_of_same_org

PASSWORD = "a long enough password"
HERE = "/app/members"


def shown(r) -> str:
    return html.unescape(r.get_data(as_text=True))


def member_id(page: str, email: str) -> str:
    found = re.search(rf'data-member-id="([^"]+)" data-role="[^"]+">\s*<td><strong>{re.escape(email)}</strong>', page)
    assert found, f"{email} is not listed"
    return found[1]


def roles(client, tenant) -> dict[str, str]:
    """The OU's members and roles as the API lists them (through a client of its own: the console's keeps its cookies)."""
    api = client.application.test_client()
    listed = api.get("/org-members", headers=member_client(api, tenant)).json
    return {m["email"]: m["role"] for m in listed}


def add(client, email: str, role: str = "Viewer", **extra):
    body = {"first_name": "Vi", "last_name": "Ewer", "email": email, "password": PASSWORD, "role": role, **extra}
    return form_post(client, HERE, HERE, body)


def test_an_owner_adds_a_member_who_signs_in_with_the_password_given(client, tenant):
    sign_in(client, tenant.email, tenant.password)
    page = shown(client.get(HERE))
    assert client.get(HERE).status_code == 200 and tenant.email in page and "Add a new member" in page
    r = add(client, "vera@example.com")
    assert r.status_code == 303 and "added=vera@example.com" in r.headers["Location"]
    page = shown(client.get(r.headers["Location"]))
    assert "Added vera@example.com" in page and PASSWORD not in page
    assert roles(client, tenant) == {tenant.email: "Owner", "vera@example.com": "Viewer"}
    api_view = client.get("/org-members", headers=member_client(client, tenant)).json[1]
    assert api_view == {
        "org_member_id": member_id(page, "vera@example.com"),
        "first_name": "Vi",
        "last_name": "Ewer",
        "email": "vera@example.com",
        "role": "Viewer",
    }
    vera = client.application.test_client()
    sign_in(vera, "vera@example.com", PASSWORD)
    assert vera.get("/app/leads").status_code == 200


def test_bad_input_is_shown_beside_its_field_with_the_api_s_message_and_no_password_comes_back(client, tenant):
    sign_in(client, tenant.email, tenant.password)
    assert add(client, "taken@example.com").status_code == 303
    for body, status, field, message in (
        ({"first_name": ""}, 400, "first_name", "Missing data for required field"),
        ({"email": "not-an-email"}, 400, "email", "Not a valid email address"),
        ({"email": "taken@example.com"}, 409, "email", "a member with email taken@example.com already exists"),
        ({"email": "TAKEN@example.com"}, 409, "email", "already exists"),
        ({"password": ""}, 400, "password", "Missing data for required field"),
        ({"password": "short"}, 400, "password", "at least 8"),
        ({"role": "Admin"}, 400, "role", "Must be one of"),
        ({"last_name": "x" * 101}, 400, "last_name", "Longer than maximum length 100"),
    ):
        r = add(client, **{"email": "new@example.com", **body})
        assert r.status_code == status and message in shown(r), (body, shown(r)[-2500:])
        assert f'id="{field}-error"' in shown(r), body
        assert PASSWORD not in shown(r) and 'name="password" type="password" value=""' in shown(r)
    # The API answers the same refusals with the same messages (one rule, one place).
    owner = member_client(client, tenant)
    body = {"first_name": "T", "email": "taken@example.com", "password": PASSWORD}
    r = client.post("/org-members", json=body, headers=owner)
    assert r.status_code == 409 and r.json["error"]["details"] == {
        "email": ["a member with email taken@example.com already exists"]
    }
    r = client.post("/org-members", json={**body, "email": "n@example.com", "password": "short"}, headers=owner)
    assert r.status_code == 400 and list(r.json["error"]["details"]) == ["password"]
    assert set(roles(client, tenant)) == {tenant.email, "taken@example.com"}


def test_roles_change_and_the_last_owner_stays_with_the_api_s_message(client, tenant):
    sign_in(client, tenant.email, tenant.password)
    assert add(client, "olga@example.com").status_code == 303
    page = shown(client.get(HERE))
    me, olga = member_id(page, tenant.email), member_id(page, "olga@example.com")
    r = form_post(client, HERE, f"{HERE}/{olga}/role", {"role": "Operator"})
    assert r.status_code == 303 and roles(client, tenant)["olga@example.com"] == "Operator"
    assert "olga@example.com is now Operator" in shown(client.get(r.headers["Location"]))

    owner = member_client(client, tenant)
    api = client.put(f"/org-units/{tenant.unit_id}/memberships/{me}", json={"role": "Viewer"}, headers=owner)
    assert api.status_code == 409
    said = api.json["error"]["message"]
    assert "at least one Owner" in said
    for action, data in ((f"{HERE}/{me}/role", {"role": "Viewer"}), (f"{HERE}/{me}/remove", {})):
        r = form_post(client, HERE, action, data)
        assert r.status_code == 409 and said in shown(r), shown(r)[-2500:]
        assert f'id="role-{me}-error"' in shown(r) and 'aria-invalid="true"' in shown(r)
    assert roles(client, tenant) == {tenant.email: "Owner", "olga@example.com": "Operator"}
    r = form_post(client, HERE, f"{HERE}/{olga}/role", {"role": "Boss"})
    assert r.status_code == 400 and "Must be one of" in shown(r) and f'id="role-{olga}-error"' in shown(r)

    # With a second Owner, the first may step down: the page is no longer theirs.
    assert form_post(client, HERE, f"{HERE}/{olga}/role", {"role": "Owner"}).status_code == 303
    r = form_post(client, HERE, f"{HERE}/{me}/role", {"role": "Viewer"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/app/")
    assert client.get(HERE).status_code == 403


def test_removing_a_member_ends_their_sessions_here(client, tenant):
    sign_in(client, tenant.email, tenant.password)
    assert add(client, "rita@example.com", "Operator").status_code == 303
    rita = client.application.test_client()
    sign_in(rita, "rita@example.com", PASSWORD)
    assert rita.get("/app/leads").status_code == 200
    rid = member_id(shown(client.get(HERE)), "rita@example.com")
    r = form_post(client, HERE, f"{HERE}/{rid}/remove", {})
    assert r.status_code == 303 and "Removed rita@example.com" in shown(client.get(r.headers["Location"]))
    assert "rita@example.com" not in roles(client, tenant)
    r = rita.get("/app/leads")
    assert r.status_code == 303 and "/app/sign-in" in r.headers["Location"]  # her only OU: her sessions ended
    assert form_post(client, HERE, f"{HERE}/{rid}/remove", {}).status_code == 404  # gone is gone


def test_a_member_of_another_unit_the_owner_owns_is_added_by_choosing_them(app, client, tenant):
    second = unit_of_same_org(app, tenant, "West", "walt@example.com")
    walt = client.application.test_client()
    sign_in(walt, second.email, second.password)
    walt_id = member_id(shown(walt.get(HERE)), second.email)
    sign_in(client, tenant.email, tenant.password)
    assert "Add a member of another unit" not in shown(client.get(HERE))  # Walt is in no OU this Owner owns
    r = form_post(client, HERE, f"{HERE}/existing", {"org_member_id": walt_id, "role": "Viewer"})
    assert r.status_code == 404 and 'data-error-code="not_found"' in shown(r)

    # Walt adds the first Owner to West; now the first Owner owns an OU Walt is in, and may add him to Main.
    me = member_id(shown(client.get(HERE)), tenant.email)
    api = app.test_client()  # its cookies (the active OU) are not the console's
    body = {"org_member_id": me, "role": "Owner"}
    r = api.post(f"/org-units/{second.unit_id}/memberships", json=body, headers=member_client(api, second))
    assert r.status_code == 200
    page = shown(client.get(HERE))
    assert "Add a member of another unit" in page and f'<option value="{walt_id}"' in page
    r = form_post(client, HERE, f"{HERE}/existing", {"org_member_id": walt_id, "role": "Operator"})
    assert r.status_code == 303 and roles(client, tenant)[second.email] == "Operator"
    assert "Add a member of another unit" not in shown(client.get(HERE))  # nobody left to add
    r = form_post(client, HERE, f"{HERE}/existing", {"org_member_id": walt_id, "role": "Owner"})
    assert r.status_code == 404  # already here: the role is changed in the row
    r = form_post(client, HERE, f"{HERE}/existing", {"org_member_id": "", "role": "Viewer"})
    assert r.status_code == 400 and 'id="org_member_id-error"' in shown(r)


def test_viewers_and_operators_see_no_members_page_and_are_refused(client, tenant):
    sign_in(client, tenant.email, tenant.password)
    assert add(client, "op@example.com", "Operator").status_code == 303
    assert add(client, "vi@example.com", "Viewer").status_code == 303
    target = member_id(shown(client.get(HERE)), "vi@example.com")
    for email in ("op@example.com", "vi@example.com"):
        other = client.application.test_client()
        sign_in(other, email, PASSWORD)
        sources = shown(other.get("/app/sources"))
        assert "Members" not in sources and HERE not in sources
        r = other.get(HERE)
        assert r.status_code == 403 and "it needs Owner" in shown(r)
        token = csrf_token(sources)  # the sign-out form's: their session has one
        for action, data in (
            (HERE, {"first_name": "X", "email": "x@example.com", "password": PASSWORD, "role": "Owner"}),
            (f"{HERE}/{target}/role", {"role": "Owner"}),
            (f"{HERE}/{target}/remove", {}),
            (f"{HERE}/existing", {"org_member_id": target, "role": "Owner"}),
        ):
            r = other.post(action, data={**data, "csrf_token": token})
            assert r.status_code == 403 and 'data-error-code="forbidden"' in shown(r), (email, action)
    assert roles(client, tenant) == {tenant.email: "Owner", "op@example.com": "Operator", "vi@example.com": "Viewer"}


def test_every_post_needs_the_session_s_csrf_token(client, tenant):
    sign_in(client, tenant.email, tenant.password)
    assert add(client, "cy@example.com").status_code == 303
    target = member_id(shown(client.get(HERE)), "cy@example.com")
    stranger = client.application.test_client()
    another = csrf_token(shown(stranger.get("/app/sign-in")))
    for action, data in (
        (HERE, {"first_name": "X", "email": "x@example.com", "password": PASSWORD}),
        (f"{HERE}/{target}/role", {"role": "Owner"}),
        (f"{HERE}/{target}/remove", {}),
        (f"{HERE}/existing", {"org_member_id": target}),
    ):
        for token in (None, "0" * 64, another):
            r = client.post(action, data=data if token is None else {**data, "csrf_token": token})
            assert r.status_code == 403 and 'data-error-code="csrf_failed"' in shown(r), (action, token)
    assert roles(client, tenant) == {tenant.email: "Owner", "cy@example.com": "Viewer"}


def test_another_ou_s_member_is_a_404_page(client, tenant, other_tenant):
    outsider = client.application.test_client()
    sign_in(outsider, other_tenant.email, other_tenant.password)
    theirs = member_id(shown(outsider.get(HERE)), other_tenant.email)
    sign_in(client, tenant.email, tenant.password)
    for action, data in (
        (f"{HERE}/{theirs}/role", {"role": "Viewer"}),
        (f"{HERE}/{theirs}/remove", {}),
        (f"{HERE}/{theirs}/role", {"role": "nonsense"}),  # not even the form is read
        (f"{HERE}/{'x' * 200}/remove", {}),
        (f"{HERE}/existing", {"org_member_id": theirs, "role": "Owner"}),
    ):
        r = form_post(client, HERE, action, data)
        assert r.status_code == 404 and 'data-error-code="not_found"' in shown(r), action
    assert roles(outsider, other_tenant) == {other_tenant.email: "Owner"}
