"""The OpenAPI document tells the statuses and error envelope the API really answers; /docs needs no internet."""

from __future__ import annotations

import copy
import json
from html.parser import HTMLParser

from flask_smorest.spec.plugins import FlaskPlugin

from tests.openapi_check import ERROR_REF, Seen

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def operations(spec):
    for path, item in spec["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield method, path, item[method]


def error_schema_of(spec, response):
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response["content"]["application/json"]["schema"]["$ref"]


def test_every_operation_documents_its_statuses_in_the_real_error_envelope(client, clean):
    spec = client.get("/openapi.json").json
    schemas = spec["components"]["schemas"]
    assert schemas["Error"]["properties"] == {"error": {"$ref": "#/components/schemas/ErrorBody"}}
    assert set(schemas["ErrorBody"]["required"]) == {"code", "message", "details"}
    assert "UNPROCESSABLE_ENTITY" not in spec["components"]["responses"]
    ops = list(operations(spec))
    assert len(ops) > 80
    for method, path, op in ops:
        where = f"{method.upper()} {path}"
        statuses = {int(s) for s in op["responses"] if s != "default"}
        assert 422 not in statuses, where
        assert any(s < 400 for s in statuses), where
        assert 429 in statuses, where  # every request counts against its source address's limit
        for status, response in op["responses"].items():
            if status == "default" or int(status) >= 400:
                assert error_schema_of(spec, response) == ERROR_REF, (where, status)
        if op.get("security"):  # every guarded operation: who is calling, what it may do, the database that says so
            assert {400, 401, 403, 503} <= statuses, where
            assert op["x-permission"]["needs"] in ("read", "ingest", "configure", "own", "member", "caller"), where
        if "{" in path:
            assert 404 in statuses, where
        if method in ("post", "put", "patch"):
            assert 415 in statuses, where
        if "requestBody" in op:
            assert {400, 413} <= statuses, where
    by_op = {(m, p): {int(s) for s in op["responses"] if s != "default"} for m, p, op in ops}
    assert not spec["paths"]["/auth/login"]["post"].get("security")
    assert {401, 503} <= by_op["post", "/auth/login"] and 403 not in by_op["post", "/auth/login"]
    assert 403 in by_op["get", "/secrets"] and 403 in by_op["get", "/leads"]
    permission = {(m, p): op.get("x-permission", {}).get("needs") for m, p, op in ops}
    assert permission["get", "/leads"] == "read" and permission["post", "/ingest"] == "ingest"
    assert permission["put", "/integrations/hubspot"] == "configure" and permission["post", "/secrets"] == "own"
    assert spec["paths"]["/secrets"]["post"]["x-permission"] == {
        "needs": "own",
        "roles": ["Owner"],
        "scopes": [],
        "write_keys": False,
    }
    assert spec["paths"]["/webhooks/sources"]["post"]["x-permission"]["scopes"] == []  # members only
    assert spec["paths"]["/webhooks/sources"]["get"]["x-permission"]["scopes"] == ["read", "admin"]
    assert spec["paths"]["/ingest/batch"]["post"]["x-permission"]["write_keys"] is True
    assert {201, 403, 409} <= by_op["post", "/admin/seed"] and 200 not in by_op["post", "/admin/seed"]
    assert {409} <= by_op["post", "/engagement-levels"] and 409 not in by_op["get", "/engagement-levels/{obj_id}"]
    assert {302, 400, 502} <= by_op["get", "/integrations/slack/callback"]
    assert by_op["get", "/"] == {200, 400, 429}  # 400: a query parameter it does not take
    assert "Retry-After" in spec["components"]["responses"]["TOO_MANY_REQUESTS"]["headers"]


def answered_schemas(spec) -> set[str]:
    """The component schemas success responses reach, through nesting too."""
    found: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/components/schemas/") and (name := ref.rsplit("/", 1)[1]) not in found:
                found.add(name)
                walk(spec["components"]["schemas"][name])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for _, _, op in operations(spec):
        walk([response for status, response in op["responses"].items() if status.startswith("2")])
    return found


def test_every_success_documents_its_body(client, clean):
    """A 2xx with a body names its content type and schema, so the fuzz (tests/test_fuzz_openapi.py) checks every
    body an operation answers, including those of routes added later; a 204 has no body to describe."""
    spec = client.get("/openapi.json").json
    bare, with_body = [], []
    for method, path, op in operations(spec):
        for status, response in op["responses"].items():
            content = response.get("content") or {}
            if status == "204":
                if content:
                    with_body.append(f"{method.upper()} {path} 204")
            elif status.startswith("2") and (not content or not all(m.get("schema") for m in content.values())):
                bare.append(f"{method.upper()} {path} {status}")
    assert not bare, "success responses without a schema (document them, e.g. @blp.alt_response):\n" + "\n".join(bare)
    assert not with_body, with_body
    schemas = spec["components"]["schemas"]
    open_shapes = [name for name in answered_schemas(spec) if schemas[name].get("additionalProperties") is not False]
    assert not open_shapes, f"our own shapes list every key (a StrictSchema): {open_shapes}"
    level = schemas["LeadDetail"]["properties"]["level"]  # a nested schema or null: that schema, not any object
    assert level == {"allOf": [{"$ref": "#/components/schemas/LevelRef"}], "nullable": True}
    assert '{"type": "object", "nullable": true}' not in json.dumps(spec)
    assert set(spec["paths"]["/events/export"]["get"]["responses"]["200"]["content"]) == {"text/csv"}
    assert set(spec["paths"]["/"]["get"]["responses"]["200"]["content"]) == {"application/json", "text/html"}
    assert set(spec["paths"]["/stream"]["get"]["responses"]["200"]["content"]) == {"text/event-stream"}


def test_the_check_fails_on_an_undeclared_status_or_an_error_outside_the_envelope(app, client, clean):
    spec = client.get("/openapi.json").json
    seen = Seen()
    refused = client.get("/leads?limit=5")
    assert refused.status_code == 401
    seen.record(app, refused)
    seen.record(app, client.get("/"))
    assert seen.problems(spec) == []

    undeclared = copy.deepcopy(spec)
    del undeclared["paths"]["/leads"]["get"]["responses"]["401"]
    assert seen.problems(undeclared) == [
        "GET /leads answered 401 (/leads?limit=5) but the document declares only 200, 400, 403, 429, 503"
    ]
    bare = copy.deepcopy(spec)
    bare["paths"]["/leads"]["get"]["responses"]["401"] = {"description": "Unauthorized"}
    assert seen.problems(bare) == ["GET /leads documents 401 without the error envelope " + ERROR_REF]
    seen.answers["get", "/leads"][500] = "/leads"  # the unexpected: the operation's "default" response
    assert seen.problems(spec) == []
    seen.answers["get", "/leads"][502] = "/leads"
    assert seen.problems(spec) == [
        "GET /leads answered 502 (/leads) but the document declares only 200, 400, 401, 403, 429, 503"
    ]
    del seen.answers["get", "/leads"][502]
    missing = copy.deepcopy(spec)
    del missing["paths"]["/"]
    assert seen.problems(missing) == ["GET / is not in the OpenAPI document"]

    foreign = client.get("/no-such-page")
    foreign.set_data(b'{"code": 404, "status": "Not Found"}')
    seen.record(app, foreign)
    [problem] = seen.problems(spec)
    assert problem.startswith("GET /no-such-page answered 404") and "error" in problem


def test_the_check_fails_on_a_success_unlike_its_document(app, client, clean):
    """Every test's successes are held to their schemas too, not only the fuzz's: a body or a content type the
    document does not give is a problem."""
    spec = client.get("/openapi.json").json

    def seen_by(document: dict, *responses) -> list[str]:
        seen = Seen()
        seen.spec = document
        for response in responses:
            seen.record(app, response)
        return seen.problems()

    status, page = client.get("/"), client.get("/", headers={"Accept": "text/html"})
    assert seen_by(spec, status, page) == []
    integer = copy.deepcopy(spec)
    integer["components"]["schemas"]["Health"]["properties"]["status"] = {"type": "integer"}
    [problem] = seen_by(integer, status)
    assert problem.startswith("GET / answered 200 unlike its document") and '"ok" is not of type "integer"' in problem
    json_only = copy.deepcopy(spec)
    del json_only["paths"]["/"]["get"]["responses"]["200"]["content"]["text/html"]
    assert seen_by(json_only, page) == ["GET / answered 200 in text/html: not in ['application/json']"]


class Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls, self.inline_scripts, self._in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.inline_scripts.append(data)


def test_docs_load_swagger_ui_from_the_app_itself(client, clean):
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html and '"validatorUrl": null' in html
    parser = Assets()
    parser.feed(html)
    assert parser.inline_scripts == []  # the page's CSP runs none: Swagger UI is started by a script file
    assert len(parser.urls) == 4, parser.urls
    kinds = {"css": "text/css", "js": "text/javascript"}
    for url in parser.urls:
        assert url.startswith("/") and not url.startswith("//"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert asset.mimetype == kinds[url.rsplit(".", 1)[1]], (url, asset.mimetype)
        if url.endswith("leadpulse-start.js"):
            assert b"SwaggerUIBundle(config)" in asset.get_data()
        else:
            assert len(asset.get_data()) > 10_000, url
    assert client.get("/docs/assets/..%2F__init__.py").status_code == 404
    assert client.get("/docs/assets/nothing.js").status_code == 404


def test_each_alias_is_its_own_endpoint_with_the_view_and_operation_of_its_path(app, client, clean):
    """Blueprint.route(aliases=...): the alias answers with the same view and is documented as the same operation."""
    spec = client.get("/openapi.json").json
    rules = {rule.endpoint: rule for rule in app.url_map.iter_rules()}
    aliases = {}
    for endpoint, rule in rules.items():
        primary = endpoint.rsplit("_alias", 1)[0] if "_alias" in endpoint else None
        if primary is None:
            continue
        assert app.view_functions[endpoint] is app.view_functions[primary], endpoint
        assert rule.methods == rules[primary].methods, endpoint
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            path, alias = FlaskPlugin.flaskpath2openapi(rules[primary].rule), FlaskPlugin.flaskpath2openapi(rule.rule)
            assert spec["paths"][alias][method.lower()] == spec["paths"][path][method.lower()], (method, alias)
            aliases[method, alias] = path
    assert aliases == {
        ("POST", "/events"): "/ingest",
        ("GET", "/leads/{lead_id}"): "/lead/{lead_id}",
        ("PUT", "/leads/{lead_id}"): "/lead/{lead_id}",
        ("DELETE", "/leads/{lead_id}"): "/lead/{lead_id}",
        ("PATCH", "/leads/{lead_id}/metadata"): "/lead/{lead_id}/metadata",
        ("GET", "/leads/{lead_id}/score"): "/score/{lead_id}",
        ("GET", "/leads/{lead_id}/aliases"): "/lead/{lead_id}/aliases",
        ("GET", "/leads/{lead_id}/deletion-status"): "/lead/{lead_id}/deletion-status",
        ("GET", "/leads/{lead_id}/activity"): "/lead/{lead_id}/activity",
        ("GET", "/leads/{lead_id}/score-history"): "/lead/{lead_id}/score-history",
    }
