"""The leadpulse command: bootstrap output, first-start bootstrap, migrations on a fresh database."""

import json
import os
import subprocess
import sys

from sqlalchemy import func, select

from config import Settings
from models.tenancy import ApiCredential, Organization
from worker.cli import bootstrap_on_first_start


def run_cli(*args, env=None, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_bootstrap_prints_the_contract_json(clean, client):
    r = run_cli("bootstrap", "--org", "Acme", "--unit", "Main", "--email", "Boss@Acme.io", "--password", "pw-123456")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"org_id", "unit_id", "client_id", "client_secret"}
    import base64

    auth = base64.b64encode(f"{out['client_id']}:{out['client_secret']}".encode()).decode()
    assert client.get("/leads", headers={"Authorization": f"Basic {auth}"}).status_code == 200
    assert client.post("/auth/login", json={"email": "boss@acme.io", "password": "pw-123456"}).status_code == 200
    r = run_cli("bootstrap", "--org", "Other", "--unit", "X", "--email", "boss@acme.io", "--password", "x")
    assert r.returncode != 0 and "already exists" in r.stderr
    r = run_cli("bootstrap", "--org", "Other", "--unit", "X", "--email", "new@acme.io")
    assert r.returncode != 0 and "--password" in r.stderr


def test_leadpulse_bootstrap_env_runs_once_on_first_start(settings, clean, capsys, app):
    s = Settings.from_env(bootstrap="Acme/Main")
    bootstrap_on_first_start(s)
    first = capsys.readouterr().out
    creds = json.loads(first.splitlines()[-1])
    assert set(creds) == {"org_id", "unit_id", "client_id", "client_secret"}
    bootstrap_on_first_start(s)
    assert capsys.readouterr().out == ""
    with app.extensions["leadpulse"].Session() as db:
        assert db.execute(select(func.count()).select_from(Organization)).scalar() == 1
        assert db.execute(select(func.count()).select_from(ApiCredential)).scalar() == 1


def test_bad_bootstrap_value_is_a_clear_error(settings, clean):
    r = run_cli("web", env={"LEADPULSE_BOOTSTRAP": "no-slash"})
    assert r.returncode != 0 and "LEADPULSE_BOOTSTRAP" in r.stderr


def test_bad_integer_setting_is_a_clear_error():
    r = run_cli("db", "upgrade", env={"PORT": "eighty"})
    assert r.returncode != 0 and "PORT" in r.stderr


def test_member_add_gives_an_existing_organization_a_login(clean, client, tenant):
    secret = "a long passphrase"
    r = run_cli(
        "member",
        "add",
        "--org",
        tenant.org_id,
        "--email",
        " Newcomer@Acme.io ",
        "--password-stdin",
        stdin=secret + "\n",
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["org_id"] == tenant.org_id and out["email"] == "newcomer@acme.io"
    assert out["units"] == [{"unit_id": tenant.unit_id, "name": "Main", "role": "Owner"}]
    assert secret not in r.stdout + r.stderr
    login = client.post("/auth/login", json={"email": "newcomer@acme.io", "password": secret})
    assert login.status_code == 200, login.json
    headers = {"Authorization": f"Bearer {login.json['token']}"}
    assert client.post("/org-units/active", json={"ouId": tenant.unit_id}, headers=headers).status_code == 200
    made = client.post("/webhooks/sources", json={"name": "Site"}, headers=headers)  # what needed a member
    assert made.status_code == 201, made.json


def test_member_add_by_organization_name_in_named_units(clean, client, tenant, other_tenant):
    assert (
        run_cli("bootstrap", "--org", "Globex", "--unit", "West").returncode == 0
    )  # a second Globex: its name is ambiguous
    r = run_cli("member", "add", "--org", "Globex", "--email", "v@globex.io", "--password", "viewer-pass-1")
    assert (
        r.returncode != 0 and "several organizations are named 'Globex'" in r.stderr and "viewer-pass-1" not in r.stderr
    )
    r = run_cli(
        "member",
        "add",
        "--org",
        "Acme",
        "--email",
        "v@acme.io",
        "--password",
        "viewer-pass-1",
        "--unit",
        "Main",
        "--role",
        "Viewer",
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["units"] == [{"unit_id": tenant.unit_id, "name": "Main", "role": "Viewer"}]
    assert "viewer-pass-1" not in r.stdout + r.stderr
    token = client.post("/auth/login", json={"email": "v@acme.io", "password": "viewer-pass-1"}).json["token"]
    assert (
        client.post(
            "/org-units/active", json={"ouId": other_tenant.unit_id}, headers={"Authorization": f"Bearer {token}"}
        ).status_code
        == 404
    )  # only Acme's OU
    viewer = {"Authorization": f"Bearer {token}"}
    assert client.post("/org-units/active", json={"ouId": tenant.unit_id}, headers=viewer).status_code == 200
    assert client.get("/leads", headers=viewer).status_code == 200
    assert client.post("/webhooks/sources", json={"name": "Site"}, headers=viewer).status_code == 403  # reads only


def test_member_add_refuses_clearly_and_writes_nothing(clean, tenant, app):
    from models.tenancy import Member

    cases = [
        (
            ["--org", "Nobody Inc", "--email", "a@x.io", "--password", "good-password"],
            "no organization has the id or name 'Nobody Inc'",
        ),
        (["--org", "Acme", "--email", tenant.email.upper(), "--password", "good-password"], "already exists"),
        (["--org", "Acme", "--email", "b@x.io", "--password", "short"], "too short"),
        (["--org", "Acme", "--email", "b@x.io", "--password", "        "], "empty"),
        (["--org", "Acme", "--email", "b@x.io", "--password-stdin"], "empty"),
        (["--org", "Acme", "--email", "bertrand@x.io", "--password", "Bertrand@x.io"], "must not be the email"),
        (["--org", "Acme", "--email", "not-an-email", "--password", "good-password"], "not an email address"),
        (
            ["--org", "Acme", "--email", "b@x.io", "--password", "good-password", "--role", "King"],
            "invalid choice: 'King'",
        ),
        (
            ["--org", "Acme", "--email", "b@x.io", "--password", "good-password", "--unit", "Nowhere"],
            "no OUs with the id or name 'Nowhere'",
        ),
        (["--org", "Acme", "--email", "b@x.io"], "--password"),
        (["--org", "Acme", "--email", "b@x.io", "--password", "good-password", "--password-stdin"], "not allowed with"),
    ]
    for args, message in cases:
        r = run_cli("member", "add", *args, stdin="")
        assert r.returncode != 0 and message in r.stderr, (args, r.stderr)
        assert "good-password" not in r.stderr and "Traceback" not in r.stderr
    with app.extensions["leadpulse"].Session() as s:
        assert s.execute(select(func.count()).select_from(Member)).scalar() == 1  # the tenant's owner only
