"""The tenant boundary, walked over every route the app has (today's and any added later): another OU's callers send
the first OU's ids in path, query and body of every operation; nothing of the first OU may come back (in a body, a
count, an export, a stream or an error) and nothing of it may change."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from flask_smorest.spec.plugins import FlaskPlugin
from sqlalchemy import select, text
from werkzeug.routing import AnyConverter

from tests.conftest import make_tenant, model_tables
from tests.fakes import FakeHubSpot, FakeSlack
from tests.tenant_world import SLACK_APP, World, build_world, id_kind, member_headers, unit_of_same_org
from webapp import create_app
from webapp.resources import stream as stream_resource
from worker.stream import announce_scores

# Query parameters and body fields (as the OpenAPI document names them) that take ids: "name", or "METHOD /path name"
# where the name means something else elsewhere.
FIELD_IDS = {
    "lead_id": "lead",
    "lead_ids": "lead",
    "targetLeadId": "lead",
    "sourceLeadIds": "other_lead",
    "POST /leads id": "lead",
    "q": "lead",
    "event_type": "event_type",
    "email": "email",
    "GET /events metadata": "metadata_filter",
    "GET /events/export metadata": "metadata_filter",
    "ruleset_id": "ruleset",
    "ruleset": "ruleset",
    "level": "level",
    "alert_min_level": "level",
    "ouId": "unit",
    "unit_id": "unit",
    "org_id": "org",
    "member_id": "member",
    "memberId": "member",
    "org_member_id": "member",
    "DELETE /events/batch ids": "event",
}
# Bodies the document does not describe field by field.
BODIES = {
    ("POST", "/ingest/batch"): lambda ids: {"events": [{"lead_id": ids["lead"], "event_type": ids["event_type"]}]},
    # an outcome is exactly one of its two fields, which the document cannot say
    ("POST", "/rulesets/<obj_id>/backtest"): lambda ids: {"outcome": {"event_type": ids["event_type"]}},
}
# Kinds a client names itself (another OU may use the same name for its own); every other kind is an id we issued.
CLIENT_NAMED = {"lead", "other_lead", "event_type", "email", "metadata_filter"}

# Routes that are not OU-scoped: no active OU needed, another OU's id in them no 404 (their answers are still scanned).
NOT_OU_SCOPED = {
    "/": "health",
    "/home": "health page",
    "/metrics": "process-wide Prometheus counters, no OU's rows",
    "/openapi.json": "the API's document",
    "/docs": "the API's document, as a page",
    "/docs/assets/<path:filename>": "the document page's scripts",
    "/static/<path:filename>": "Flask's static files",
    "/auth/login": "a member proves who they are",
    "/auth/cleanup": "clears the caller's own cookies",
    "/me": "the caller's own profile",
    "/auth/logout": "ends the caller's own session",
    "/me/rate-limit": "the caller's own limits",
    "/org-units": "the member's own OUs (a new one is theirs too)",
    "/settings/slack-app": "the organization's Slack app, shared by its OUs",
    "/integrations/slack/callback": "Slack's redirect: the single-use state, bound to the browser, is the credential",
    "/webhooks/segment": "Segment's deliveries: the write key is the credential",
    "/webhooks/segment/v1/<any(batch, track, identify, page):call>": "Segment's deliveries at its own paths",
    "/webhooks/hubspot": "HubSpot's deliveries: the app's signature is the credential",
    "/webhooks/events/<source_id>": "signed deliveries: the source's signing secret is the credential, not an OU's",
}
# Routes that filter by a name in the path: another OU's name is a name this OU has nothing of (no 404).
NAME_FILTERS = {"/event-types/<event_type>/properties": "the metadata keys this OU's events of that type have"}
# Operations that may answer 2xx when they name another OU's objects, because they then do nothing to them.
IGNORES_FOREIGN_IDS = {("DELETE", "/events/batch"): "answers 200 with every id of another OU in not_found"}
# What a caller of another OU of the same organization may be shown of the organization (never of the other OU).
ORG_WIDE = {"/settings/slack-app": "the organization's Slack app (its client id; the secret is never returned)"}

STREAM_SECONDS = 10.0  # the most a stream is read for; it is also told to send keepalives often, so reads return


@dataclass
class Identity:
    name: str
    headers: dict
    member: bool
    has_ou: bool


@dataclass
class Call:
    rule: object
    method: str
    path: str
    query: dict
    body: object
    path_kinds: set
    field_kinds: set
    sent: list


@pytest.fixture
def fakes(monkeypatch):
    with FakeHubSpot(tokens=["pat-world-first-0123", "pat-world-other-0123"]) as hubspot:
        with FakeSlack(client_id=SLACK_APP[0], client_secret=SLACK_APP[1], team_name="Team worldorgq") as slack:
            monkeypatch.setenv("HUBSPOT_API_BASE", hubspot.url)  # the workers read their settings from the environment
            monkeypatch.setenv("SLACK_API_BASE", slack.base_url)
            yield hubspot, slack


@pytest.fixture
def app(settings, clean, fakes, monkeypatch):
    hubspot, slack = fakes
    monkeypatch.setattr(stream_resource, "HEARTBEAT_SECONDS", 0.2)  # a stream's reads return within this
    app = create_app(dataclasses.replace(settings, hubspot_api_base=hubspot.url, slack_api_base=slack.base_url))
    app.testing = True
    return app


@pytest.mark.parametrize("other_org", [True, False], ids=["another-organization", "same-organization"])
def test_another_ous_callers_get_nothing_of_it_on_any_route(app, settings, fakes, run_worker, other_org):
    hubspot, slack = fakes
    mine = make_tenant(settings, org="Org worldorgq", unit="Unit worldorgq", email="owner.worldorgq@example.com")
    first = build_world(
        app,
        mine,
        {"unit": "worldunitq", "org": "worldorgq"},
        run_worker,
        leads=35,
        hubspot=hubspot,
        hubspot_token="pat-world-first-0123",
        slack=slack,
    )
    # The other OU comes after the first's world: only an Owner of every OU may set the organization's Slack app.
    if other_org:
        theirs = make_tenant(settings, org="Org otherorgq", unit="Unit otherorgq", email="owner.otherorgq@example.com")
    else:
        theirs = unit_of_same_org(app, mine, "Unit otherunitq", "owner.otherunitq@example.com")
    other = build_world(
        app,
        theirs,
        {"unit": "otherunitq", "org": "otherorgq" if other_org else "worldorgq"},
        run_worker,
        leads=10,
        hubspot=hubspot,
        hubspot_token="pat-world-other-0123",
    )
    telling = {n for what, count in first.counts.items() for n in (count, count + other.counts[what])}
    # numbers the other OU's answers hold for their own reasons: its counts, scores (multiples of 5), level bounds
    innocent = {*other.counts.values(), *range(0, 1000, 5), 24, 49, 74}
    assert min(telling) > 30 and not telling & innocent, (first.counts, other.counts)
    scopes = ("unit", "org") if other_org else ("unit",)
    before = snapshot(app, first, scopes)
    assert [t for t, rows in before.items() if not rows] == ["hubspot_pending_creations"]  # linked by its sync

    walker = Walker(app, first, other, scopes, telling)
    calls = walker.calls()
    identities = walker.identities()
    problems = [p for call in calls for identity in identities for p in walker.try_call(call, identity)]
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:60])

    assert snapshot(app, first, scopes) == before, "another OU's calls changed the first OU's rows"
    assert not rows_across_units(app), "a row refers to a row of another OU"
    assert not (controls := walker.controls(calls)), "the first OU's own calls: " + "\n".join(controls)


class Walker:
    def __init__(self, app, first: World, other: World, scopes, counts: set[int]):
        """counts: numbers that tell of the first OU: its counts of leads and events, alone or added to the other's."""
        self.app, self.first, self.other, self.scopes, self.counts = app, first, other, scopes, counts
        self.client = app.test_client(use_cookies=False)
        self.spec = self.client.get("/openapi.json").json
        self.telltales = first.telltales(scopes)

    def identities(self) -> list[Identity]:
        """The other OU's credential, its member in its own OU, and its member with activeOu forged to the first OU."""
        t = self.other.tenant
        return [
            Identity("credential", t.auth, member=False, has_ou=True),
            Identity("member", member_headers(self.client, t), member=True, has_ou=True),
            Identity("forged-activeOu", member_headers(self.client, t, self.first.tenant.unit_id), True, False),
        ]

    def calls(self) -> list[Call]:
        """Every rule x method, reads first, then writes to one object, then writes to collections (which may make
        the other OU's own objects under names the first OU uses too, e.g. a lead id)."""
        calls, unmapped = [], []
        for rule in self.app.url_map.iter_rules():
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                try:
                    calls += self.calls_of(rule, method)
                except LookupError as exc:
                    unmapped.append(f"{method} {rule.rule}: {exc}")
        assert not unmapped, "routes with a variable no id kind is known for (add it to PATH_IDS):\n" + "\n".join(
            unmapped
        )
        gone = set(NOT_OU_SCOPED) - {r.rule for r in self.app.url_map.iter_rules()}
        assert not gone, f"NOT_OU_SCOPED names routes the app no longer has: {gone}"
        # Logging out ends the caller's session: last, so every other call is made signed in.
        return sorted(
            calls,
            key=lambda c: (c.rule.rule == "/auth/logout", c.method != "GET", not c.path_kinds, c.rule.rule, c.method),
        )

    def calls_of(self, rule, method: str) -> list[Call]:
        """The first OU's ids in the path and in the body; each query parameter that takes an id alone (a refusal of
        one would hide what the others do), and none."""
        ids = self.first.ids
        values, path_kinds = {}, set()
        for name, converter in rule._converters.items():
            kind = id_kind(rule.rule, name)
            if isinstance(converter, AnyConverter):
                values[name] = sorted(converter.items)[0]
            elif kind is not None:
                values[name] = ids[kind]
                path_kinds.add(kind)
            elif rule.rule in NOT_OU_SCOPED:
                values[name] = "x"
            else:
                raise LookupError(f"no id kind for <{name}>")
        path = rule.build(values, append_unknown=False)[1]
        operation = self.spec["paths"].get(FlaskPlugin.flaskpath2openapi(rule.rule), {}).get(method.lower(), {})
        required, by_id = {}, []
        for param in operation.get("parameters", []):
            if param["in"] != "query":
                continue
            kind = field_kind(method, rule.rule, param["name"])
            if kind:
                by_id.append(({param["name"]: ids[kind]}, {kind}))
            elif param.get("required"):
                required[param["name"]] = example(self.resolve(param["schema"]))
        body, body_kinds = None, set()
        content = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if (method, rule.rule) in BODIES:
            body = BODIES[method, rule.rule](ids)
            body_kinds = {kind for name, kind in FIELD_IDS.items() if str(ids.get(kind)) in json.dumps(body)}
        elif content:
            body = self.body(method, rule.rule, self.resolve(content["schema"]), body_kinds)
        calls = []
        for query, kinds in [({}, set()), *by_id]:
            query = {**required, **query}
            sent = [str(v) for v in (*values.values(), *query.values())] + strings_in(body)
            calls.append(Call(rule, method, path, query, body, path_kinds, kinds | body_kinds, sent))
        return calls

    def body(self, method: str, rule: str, schema: dict, field_kinds: set) -> dict:
        """Ids of the first OU in every field that takes one; a plain valid value in each other required field."""
        out = {}
        for name, prop in schema.get("properties", {}).items():
            prop = self.resolve(prop)
            kind = field_kind(method, rule, name)
            if prop.get("readOnly"):
                continue
            if kind:
                value = self.first.ids[kind]
                out[name] = [value] if prop.get("type") == "array" else value
                field_kinds.add(kind)
            elif name in schema.get("required", []):
                out[name] = example(prop)
        return out

    def resolve(self, schema: dict) -> dict:
        while "$ref" in schema:
            schema = self.spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def send(self, call: Call, headers: dict):
        kwargs = {"json": call.body} if call.body is not None else {}
        return self.client.open(call.path, method=call.method, query_string=call.query, headers=headers, **kwargs)

    def try_call(self, call: Call, identity: Identity) -> list[str]:
        where = f"{call.method} {call.path}{'?' if call.query else ''}{urlencode(call.query)} as {identity.name}"
        resp = self.send(call, identity.headers)
        try:
            seen = self.read(resp)
        finally:
            resp.close()
        problems, status = [], resp.status_code
        error = resp.get_json(silent=True) if status >= 400 and resp.is_json else None
        code = error["error"]["code"] if isinstance(error, dict) and "error" in error else None
        if status >= 500 or "(the caller's own news did not come" in seen:
            problems.append(f"{where}: {status} {seen[-300:]}")
        problems += [f"{where}: {status} shows {p}" for p in self.leaks(call, resp, seen)]
        rule = call.rule.rule
        if rule in NOT_OU_SCOPED or (not self.other_org and rule in ORG_WIDE):
            return problems
        if not identity.has_ou and status < 400:
            problems.append(f"{where}: {status} with no active OU (the forged cookie must select nothing)")
        if call.path_kinds and rule not in NAME_FILTERS:
            expected = {404}
            if not identity.member and code == "forbidden":
                expected.add(403)  # a member's operation: refused to a credential before any lookup
            if not identity.has_ou and code == "no_active_ou":
                expected.add(400)
            if status not in expected:
                problems.append(f"{where}: {status} {code}, not 404, for the first OU's {sorted(call.path_kinds)}")
        issued = call.field_kinds - CLIENT_NAMED
        if issued and (status < 300 or status == 409) and (call.method, rule) not in IGNORES_FOREIGN_IDS:
            # a success, or a conflict (which says the object was found), for the first OU's objects
            problems.append(f"{where}: {status} for a body or query naming the first OU's {sorted(issued)}")
        return problems

    @property
    def other_org(self) -> bool:
        return "org" in self.scopes

    def read(self, resp) -> str:
        """The whole body, or for a stream what it carries while both OUs send events, for a bounded time."""
        if resp.mimetype != "text/event-stream":
            return resp.get_data(as_text=True)
        return self.read_stream(resp)

    def read_stream(self, resp) -> str:
        """Read until the caller's own news arrives, the first OU's announced just before it (as the workers announce
        a score, without changing its rows): had the stream carried the first OU's news, it would have come first."""
        chunks, deadline, it = [], time.monotonic() + STREAM_SECONDS, iter(resp.response)
        chunks.append(next(it))  # subscribed: nothing published from now on is missed
        first = self.first.ids
        announce_scores(
            self.app.extensions["leadpulse"].redis, [(first["unit"], first["lead"], 7, first["level"], None)]
        )
        probe = f"stream-probe-{time.monotonic_ns()}"
        other_event = {"lead_id": probe, "event_type": "stream_probe"}
        assert self.client.post("/ingest", json=other_event, headers=self.other.tenant.auth).status_code == 202
        for chunk in it:
            chunks.append(chunk)
            if probe in str(chunk) or time.monotonic() > deadline:
                break
        text = "".join(c.decode() if isinstance(c, bytes) else c for c in chunks)
        return text if probe in text else text + f"\n(the caller's own news did not come in {STREAM_SECONDS} s)"

    def leaks(self, call: Call, resp, body: str) -> list[str]:
        """The first OU's telltales in the answer (headers and body), once what the caller sent itself is taken out;
        and its counts as numbers."""
        seen = "\n".join(f"{k}: {v}" for k, v in resp.headers.items()) + "\n" + body
        for sent in sorted(call.sent, key=len, reverse=True):
            seen = seen.replace(sent, "")
        found = [repr(t) for t in self.telltales if t in seen]
        numbers = set(json_ints(resp.get_json(silent=True))) if resp.is_json else set()
        if resp.headers.get("X-Total-Count", "").isdigit():
            numbers.add(int(resp.headers["X-Total-Count"]))
        found += [f"the number {n}, a count of the first OU's rows" for n in numbers & self.counts]
        return found

    def controls(self, calls: list[Call]) -> list[str]:
        """The same calls by the first OU's own member find its objects (no 404): the ids walked with were real.
        Reads first, deletions last (a deletion's object is gone for the calls after it)."""
        problems = []
        own = member_headers(self.client, self.first.tenant)
        for call in sorted(calls, key=lambda c: (c.method == "DELETE", c.method != "GET")):
            if not call.path_kinds or call.rule.rule in {**NAME_FILTERS, **NOT_OU_SCOPED}:
                continue
            resp = self.send(call, own)
            if resp.status_code == 404 or resp.status_code >= 500:
                problems.append(f"{call.method} {call.path}: {resp.status_code} {resp.get_data(as_text=True)[:200]}")
            resp.close()
        return problems


def field_kind(method: str, rule: str, name: str) -> str | None:
    return FIELD_IDS.get(f"{method} {FlaskPlugin.flaskpath2openapi(rule)} {name}") or FIELD_IDS.get(name)


def example(schema: dict):
    """A plain value the schema accepts, for a required field that takes no id."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "integer":
        return max(schema.get("minimum", 1), 1)
    if kind == "number":
        return 1
    if kind == "boolean":
        return False
    if kind == "array":
        return [example(schema.get("items", {}))] * max(schema.get("minItems", 1), 1)
    if kind == "object":
        return {}
    if schema.get("format") == "date-time":
        return "2026-01-01T00:00:00Z"
    if schema.get("format") == "email":
        return "walker@example.com"
    return "walker" + "x" * max(schema.get("minLength", 0) - 6, 0)


def strings_in(value) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return [value] if isinstance(value, str) else []


# An audit entry's timing and HTTP status, and row ids from sequences every OU shares: numbers that count no OU's rows
# (a sequence does show how busy the instance is: noted, accepted as for event ids).
MEASURES = {"latency_ms", "status", "id"}


def json_ints(value):
    if isinstance(value, dict):
        value = [v for k, v in value.items() if k not in MEASURES]
    if isinstance(value, list):
        for v in value:
            yield from json_ints(v)
    elif isinstance(value, int) and not isinstance(value, bool):
        yield value


def snapshot(app, world: World, scopes) -> dict[str, list]:
    """Every row the first OU owns (and, for another organization's caller, its organization's), table by table."""
    tables = {t.name: t for t in model_tables()}
    units = world.units
    lead_pks = select(tables["leads"].c.pk).where(tables["leads"].c.unit_id.in_(units))
    out = {}
    with app.extensions["leadpulse"].Session() as s:
        for table in tables.values():
            c = table.c
            if "unit_id" in c:
                where = c.unit_id.in_(units)
            elif "lead_pk" in c:
                where = c.lead_pk.in_(lead_pks)
            elif "org_id" in c and "org" in scopes:
                where = c.org_id == world.tenant.org_id
            elif table.name == "organizations" and "org" in scopes:
                where = c.id == world.tenant.org_id
            else:
                continue
            rows = s.execute(select(table).where(where)).all()
            out[table.name] = sorted(json.dumps(list(row), default=str) for row in rows)
    return out


def rows_across_units(app) -> list[str]:
    """Every foreign key whose two rows belong to different OUs (or organizations): none may."""
    tables = {t.name: t for t in model_tables()}
    found = []

    def owner(table, alias, column):
        if column in table.c:
            return f"{alias}.{column}"
        if "lead_pk" in table.c:
            return f"(SELECT {column} FROM leads WHERE pk = {alias}.lead_pk)"
        if column == "org_id" and "member_id" in table.c:
            return f"(SELECT org_id FROM members WHERE id = {alias}.member_id)"
        if column == "org_id" and "unit_id" in table.c:
            return f"(SELECT org_id FROM org_units WHERE id = {alias}.unit_id)"
        return None

    with app.extensions["leadpulse"].Session() as s:
        for table in tables.values():
            for fk in table.foreign_keys:
                target = fk.column.table
                for column in ("unit_id", "org_id"):
                    mine, theirs = owner(table, "t", column), owner(target, "r", column)
                    if mine is None or theirs is None:
                        continue
                    join = f"t.{fk.parent.name} = r.{fk.column.name}"
                    sql = f"SELECT count(*) FROM {table.name} t JOIN {target.name} r ON {join} WHERE {mine} <> {theirs}"
                    if s.execute(text(sql)).scalar():
                        found.append(f"{table.name}.{fk.parent.name} -> {target.name} ({column})")
    return found
