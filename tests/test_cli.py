"""The leadpulse command: bootstrap output, first-start bootstrap, migrations on a fresh database."""
import json
import os
import subprocess
import sys

from sqlalchemy import func, select

from config import Settings
from models.tenancy import ApiCredential, Organization
from worker.cli import bootstrap_on_first_start


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


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
