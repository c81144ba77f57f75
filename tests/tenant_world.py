"""An OU holding one object of every kind, built through the API as a user would, and what would betray it elsewhere:
its ids by kind, the marker in each of its names, emails and values, its server-made secrets and its counts."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlparse

import requests
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from integrations.hubspot_webhooks import sign_v3
from models.accounts import create_credential, create_member, create_unit
from models.events import Event
from models.leads import Lead
from models.tenancy import Organization
from tests.conftest import Api, Tenant
from tests.helpers import REFERENCE_LEVELS, create_levels, settle

# What each URL variable names (World.ids' kinds): the variable's name, or the path up to it where the name says
# nothing (obj_id). A route with a variable named nowhere here fails the isolation walk: a new one is one line here.
PATH_IDS = {
    "lead_id": "lead",
    "event_type": "event_type",
    "event_id": "event",
    "source_id": "webhook_source",
    "secret_id": "credential",
    "unit_id": "unit",
    "member_id": "member",
    "level_id": "level",
    "ruleset_id": "ruleset",
    "rule_id": "rule",
    "decay_id": "decay",
    "/rulesets/{obj_id}": "ruleset",
    "/rules/{obj_id}": "rule",
    "/decays/{obj_id}": "decay",
    "/engagement-levels/{obj_id}": "level",
    "/engagement-levels/history/{entry_id}": "level_history",
    "/app/levels/history/{entry_id}": "level_history",
    "/webhooks/sources/{obj_id}": "webhook_source",
}
SLACK_APP = ("7391846.2847163", "world-slack-client-secret-0123456789")  # an organization's Slack app: id, secret


@dataclass
class World:
    """markers: {"unit": the marker in every string the OU owns (lead ids, emails, names, metadata, event types),
    "org": the one in what its organization owns (its name, members' emails, OU names)}; ids: one id per kind, as
    URLs and bodies take them; secrets: server-made values (ids, client ids, signing secrets, write keys), each with
    the scope it belongs to; counts: how many leads and events the OU has (listed, and rows)."""

    tenant: Tenant
    markers: dict[str, str]
    ids: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    units: list[str] = field(default_factory=list)

    def telltales(self, scopes=("unit", "org")) -> list[str]:
        """The strings that, seen by a caller outside these scopes, betray this OU."""
        return [self.markers[s] for s in scopes] + [value for value, s in self.secrets.items() if s in scopes]


def id_kind(path: str, name: str) -> str | None:
    """The kind of id the variable name of path (a Flask rule or an OpenAPI path) takes, if one is known."""
    path = re.sub(r"<(?:[^<>:]+:)?([^<>]+)>", r"{\1}", path)  # Flask's <converter:name> as OpenAPI's {name}
    return PATH_IDS.get(path[: path.index(f"{{{name}}}") + len(name) + 2]) or PATH_IDS.get(name)


def member_headers(client, tenant: Tenant, unit_id: str | None = None) -> dict:
    """The tenant's member's Bearer token and an activeOu cookie (its own OU unless unit_id), for a cookieless client."""
    r = client.post("/auth/login", json={"email": tenant.email, "password": tenant.password})
    assert r.status_code == 200, r.json
    return {"Authorization": f"Bearer {r.json['token']}", "Cookie": f"activeOu={unit_id or tenant.unit_id}"}


def unit_of_same_org(app, first: Tenant, unit: str, email: str) -> Tenant:
    """A second OU of first's organization, with its own credential and a member of it alone."""
    password = "correct horse battery"
    with app.extensions["leadpulse"].Session() as s, s.begin():
        org = s.execute(select(Organization).where(Organization.id == first.org_id)).scalar_one()
        new = create_unit(s, org.id, unit)
        cred, secret = create_credential(s, org.id, new.id, "walker")
        create_member(s, org.id, email, password, [(new.id, "Owner")])
        return Tenant(org.id, new.id, cred.client_id, secret, email, password)


def _ok(r, status=200):
    assert r.status_code == status, (r.request.method, r.request.path, r.status_code, r.get_data(as_text=True))
    return r.json


def build_world(
    app, tenant: Tenant, markers: dict[str, str], run_worker, *, leads: int, hubspot, hubspot_token: str, slack=None
) -> World:
    """Fill the tenant's OU through the API. slack: a FakeSlack to configure the organization's Slack app and install
    it into this OU (the organization's objects are made by its first OU only)."""
    m = markers["unit"]
    world = World(tenant, markers)
    ids, secrets = world.ids, world.secrets
    client = app.test_client(use_cookies=False)
    api = Api(client, tenant)
    owner = member_headers(client, tenant)

    levels = create_levels(api, [{**level, "name": f"{level['name']} {m}"} for level in REFERENCE_LEVELS])
    ids["level"] = levels[f"Hot {m}"]
    # the newest entry, whose table is the current one: reverting to it (the fuzz, the walk's own calls) changes nothing
    ids["level_history"] = _ok(api.get("/engagement-levels/history"))[0]["id"]
    ids["event_type"] = f"demo_{m}"
    ids["ruleset"] = _ok(api.post("/rulesets", json={"name": f"Engagement {m}", "is_primary": True}), 201)["ruleset_id"]
    for event_type, weight in ((ids["event_type"], 60), (f"view_{m}", 5)):
        rule = {"ruleset_id": ids["ruleset"], "event_type": event_type, "weight": weight, "icon": m}
        ids["rule"] = _ok(api.post("/rules", json=rule), 201)["rule_id"]
    _ok(api.post(f"/rulesets/{ids['ruleset']}/publish"))
    ids["decay"] = _ok(api.post("/decays", json={"inactive_for": 30, "unit": "days", "decrease": 5}), 201)["decay_id"]
    _ok(api.post("/rulesets", json={"name": f"Draft {m}"}), 201)
    _ok(api.put("/settings/ou/alerts", json={"alert_min_level": ids["level"], "cooldown_hours": 7}))

    ids["lead"], ids["email"], ids["metadata_filter"] = f"lead-{m}", f"ada.{m}@example.com", f"company:Co {m}"
    first = {
        "lead_id": ids["lead"],
        "aliases": [{"alias_kind": "email", "raw_value": ids["email"]}],
        "event_type": ids["event_type"],
        "metadata": {"company": f"Co {m}", "channel": "web", "url": f"/pricing/{m}"},
        "event_id": f"evt-{m}",
    }
    ids["event"] = _ok(api.post("/ingest", json=first), 202)["id"]
    bulk = [{"lead_id": f"bulk-{n}-{m}", "event_type": f"view_{m}"} for n in range(leads)]
    _ok(api.post("/ingest/batch", json={"events": bulk}), 202)
    ids["other_lead"] = f"made-{m}"
    _ok(api.post("/leads", json={"id": ids["other_lead"], "metadata": {"plan": f"Plan {m}"}}), 201)
    _ok(api.patch(f"/lead/{ids['lead']}/metadata", json={"metadata": {"owner": f"Owner {m}"}}))
    for other in (f"dup-{m}", f"gone-{m}"):
        _ok(api.post("/ingest", json={"lead_id": other, "event_type": f"view_{m}"}), 202)
    _ok(api.post("/leads/merge", json={"targetLeadId": ids["lead"], "sourceLeadIds": [f"dup-{m}"]}))
    _ok(api.delete(f"/lead/gone-{m}"))
    rows = io.StringIO()
    csv.writer(rows).writerows([["lead_id", "event_type", "email"], [f"csv-{m}", f"view_{m}", f"csv.{m}@example.com"]])
    upload = {"file": (io.BytesIO(rows.getvalue().encode()), "events.csv", "text/csv")}
    _ok(api.post("/import", data=upload, content_type="multipart/form-data"), 202)

    source = _ok(client.post("/webhooks/sources", json={"name": f"Tracker {m}", "description": m}, headers=owner), 201)
    ids["webhook_source"] = source["id"]
    secrets[source["secret"]] = "unit"
    body = json.dumps({"lead_id": ids["lead"], "event_type": f"view_{m}", "metadata": {"via": f"webhook {m}"}})
    at = datetime.now(UTC)
    signature = {
        "webhook-id": f"msg-{m}",
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(source["secret"]).sign(f"msg-{m}", at, body),
    }
    _ok(client.post(source["url"], data=body, headers={**signature, "Content-Type": "application/json"}), 202)
    segment = _ok(
        client.post("/webhooks/sources", json={"name": f"Segment {m}", "kind": "segment"}, headers=owner), 201
    )
    secrets[segment["write_key"]] = secrets[segment["id"]] = "unit"
    write_key = {"Authorization": "Basic " + base64.b64encode(f"{segment['write_key']}:".encode()).decode()}
    track = {"type": "track", "userId": f"seg-{m}", "event": f"view_{m}", "messageId": f"seg-{m}"}
    _ok(client.post("/webhooks/segment", json=track, headers=write_key))
    app_secret = f"hubspot-app-secret-{m}"
    hubspot_source = {"name": f"HubSpot {m}", "kind": "hubspot", "client_secret": app_secret}
    hubspot_source = _ok(client.post("/webhooks/sources", json=hubspot_source, headers=owner), 201)
    secrets[hubspot_source["id"]] = "unit"
    contact = int(hubspot.add_contact(f"hs.{m}@example.com"))
    deliveries = [  # before HubSpot is connected: the creations wait for a token (one for a contact HubSpot lacks)
        {"objectId": contact, "eventId": 1, "subscriptionType": "contact.creation", "portalId": hubspot.portal_id},
        {"objectId": 987654321, "eventId": 2, "subscriptionType": "contact.creation", "portalId": hubspot.portal_id},
        {
            "objectId": contact,
            "eventId": 3,
            "subscriptionType": "contact.propertyChange",
            "propertyName": "city",
            "propertyValue": f"City {m}",
            "portalId": hubspot.portal_id,
        },
    ]
    delivery, at_ms = json.dumps(deliveries).encode(), str(int(time.time() * 1000))
    signature = sign_v3(app_secret, "POST", f"http://localhost{hubspot_source['url']}", delivery, at_ms)
    headers = {"X-HubSpot-Request-Timestamp": at_ms, "X-HubSpot-Signature-v3": signature}
    _ok(client.post(hubspot_source["url"], data=delivery, headers={**headers, "Content-Type": "application/json"}))
    _ok(api.put("/integrations/hubspot", json={"access_token": hubspot_token}))
    _ok(client.post("/admin/seed", headers=owner), 201)

    credential = _ok(client.post("/secrets", json={"name": f"Key {m}"}, headers=owner), 201)
    ids["credential"] = credential["secret_id"]
    for secret in (credential["client_id"], credential["client_secret"], tenant.client_id, tenant.client_secret):
        secrets[secret] = "unit"
    ids["unit"], ids["org"], world.units = tenant.unit_id, tenant.org_id, [tenant.unit_id]
    for kind in ("level", "level_history", "rule", "ruleset", "decay", "webhook_source", "credential", "unit"):
        secrets[ids[kind]] = "unit"
    ids["member"] = _ok(client.get("/me", headers=owner))["org_member_id"]
    secrets[ids["member"]] = "org"
    if slack is not None:
        secrets[tenant.org_id] = "org"
        second = _ok(client.post("/org-units", json={"name": f"Second {markers['org']}"}, headers=owner), 201)
        secrets[second["unit_id"]] = "org"
        world.units.append(second["unit_id"])
        _ok(client.put("/settings/slack-app", json=dict(zip(("client_id", "client_secret"), SLACK_APP)), headers=owner))
        secrets[SLACK_APP[0]] = secrets[SLACK_APP[1]] = "org"
        install_slack(client, owner, slack)
        _ok(client.post("/integrations/slack/install", headers=owner))  # one install begun, never finished

    settle(app, run_worker)
    for path in ("/leads", "/events"):  # as the API counts them, and as rows (merged and deleted leads included)
        world.counts[path] = _ok(client.get(path, query_string={"limit": 1}, headers=tenant.auth))["total"]
    with app.extensions["leadpulse"].Session() as s:
        for table in (Lead, Event):
            rows = s.execute(select(func.count()).select_from(table).where(table.unit_id == tenant.unit_id)).scalar()
            world.counts[table.__tablename__] = rows
    return world


def install_slack(client, owner: dict, fake) -> None:
    """Slack's OAuth install as a browser does it: our authorize URL, Slack's redirect back, our callback."""
    authorize_url = _ok(client.post("/integrations/slack/install", headers=owner))["authorize_url"]
    back = urlparse(requests.get(authorize_url, allow_redirects=False, timeout=5).headers["Location"])
    query = {k: v[0] for k, v in parse_qs(back.query).items()}
    r = client.get(back.path, query_string=query, headers={"Cookie": f"leadpulse_slack_state={query['state']}"})
    assert r.status_code == 302 and r.headers["Location"].endswith("slack=connected"), r.get_data(as_text=True)
