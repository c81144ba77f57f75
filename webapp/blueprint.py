"""flask-smorest Api and Blueprint: JSON parsing that refuses what PostgreSQL cannot store or Python cannot nest, and
an OpenAPI document that names every status an operation answers, errors in the envelope webapp/errors.py sends."""

from __future__ import annotations

import json
import math
from http import HTTPStatus
from importlib.resources import files

import flask
import flask_smorest
from flask_smorest.utils import prepare_response
from marshmallow import Schema, fields
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request

from webapp.access import NEEDS, ROLE_GRANTS, SCOPE_GRANTS, browser_allowed, member_only, need_of


def _no_constants(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text} is out of range")
    return value


class StrictJSONParser(FlaskParser):
    """NaN/Infinity and absurdly deep nesting are malformed JSON (a 400), not a database or recursion error; an unknown
    query parameter is named like an unknown body field (webargs drops them: ?ruleset= for ?ruleset_id= would answer
    the primary ruleset's numbers without a word)."""

    DEFAULT_UNKNOWN_BY_LOCATION = {**FlaskParser.DEFAULT_UNKNOWN_BY_LOCATION, "query": None, "querystring": None}

    def _raw_load_json(self, req):
        if not is_json_request(req):
            return core.missing
        data = req.get_data(cache=True)
        if not data:
            return core.missing
        return strict_json_loads(data)


# One decoder for every body: json.loads with hooks builds a new decoder (and its scanner) per call.
_DECODER = json.JSONDecoder(parse_constant=_no_constants, parse_float=_finite_float)


def strict_json_loads(data: bytes | str):
    """json.loads that treats NaN/Infinity, infinite numbers and runaway nesting as malformed JSON."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        if text.startswith("\ufeff"):  # as json.loads says it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        return _DECODER.decode(text)
    except json.JSONDecodeError:
        raise
    except UnicodeDecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        # webargs treats an empty doc as "no body"; give it the text so it reports malformed JSON.
        raise json.JSONDecodeError(
            "nested too deeply" if isinstance(exc, RecursionError) else str(exc), "body", 0
        ) from exc


class ErrorBodySchema(Schema):
    code = fields.String(
        required=True, metadata={"description": "machine-readable reason, e.g. validation_error, not_found"}
    )
    message = fields.String(required=True, metadata={"description": "for a person"})
    details = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        required=True,
        metadata={"description": "field path -> problems with it; empty when no field is at fault"},
    )


class ErrorSchema(Schema):
    """What every error answers (webapp.errors.error_payload)."""

    error = fields.Nested(ErrorBodySchema, required=True)


ERROR_DESCRIPTIONS = {
    400: "Bad input: details names each field at fault (or the caller has no active organization unit)",
    401: "Missing or invalid credentials (or webhook signature)",
    403: "The caller's role or scopes do not allow this (see the operation's x-permission), or a write key used from "
    "an origin it does not list",
    404: "No such object in the caller's organization unit",
    409: "Conflicts with the current state",
    413: "Body, metadata or file too large",
    415: "Body is not JSON (or not the file type the operation takes)",
    429: "Over a rate limit, or sign-in held after failed attempts: retry after Retry-After seconds",
    502: "HubSpot or Slack failed",
    503: "Busy or unreachable (database, HubSpot, Slack): retry, after Retry-After when given",
}
BODY_LOCATIONS = {"json", "form", "files"}
AUTH_SCHEMES = [{"basicAuth": []}, {"bearerAuth": []}]


def raw_body(view):
    """The view reads its body itself, as sent (a signature covers the bytes): nothing parses it before the view."""
    view._raw_body = True
    return view


def raw_query(view):
    """The view reads its query parameters itself (a caller outside the API's rules: Slack's OAuth redirect, HubSpot's
    webhook URL), so they are not refused as unread."""
    view._raw_query = True
    return view


def operation_statuses(rule: str, method: str, doc: dict, declared, *, guarded: bool, any_body: bool) -> set[int]:
    """What an operation can answer: the app-wide rules (auth, JSON bodies, ids in the path) plus what it declares."""
    locations = {p["in"] for p in doc.get("arguments", {}).get("parameters", [])}
    # 429: every request counts against its address's limit (webapp/rate_limits.py); 400: webargs' refusals, an
    # OU-scoped call with no active OU, a query parameter the operation does not take (webapp.refuse_unread_query)
    statuses = set(declared) | {400, 429}
    if guarded:  # the caller is looked up in the database before the view runs, and may lack the permission
        statuses |= {401, 403, 503}
    if "<" in rule:  # an id that is not the caller's, or a NUL in it
        statuses.add(404)
    if locations & BODY_LOCATIONS or any_body:
        statuses.add(413)
    if method in ("post", "put", "patch"):  # a body that is not JSON, too large, or not empty where none is taken
        statuses |= {413, 415}  # (webapp.require_json_body, refuse_ignored_body)
    if not doc.get("success_status_codes") and all(s >= 400 for s in statuses):
        statuses.add(200)
    return statuses


def permission_doc(need: str, member_only: bool, browser: bool) -> dict:
    """Who may call an operation, from the one table (webapp/access.py)."""
    scopes = [s for s, granted in SCOPE_GRANTS.items() if need in granted or need == "caller"]
    return {
        "needs": need,
        "roles": [r for r, granted in ROLE_GRANTS.items() if need in granted or need in ("member", "caller")],
        "scopes": [] if member_only else scopes,
        "write_keys": browser,
    }


class Blueprint(flask_smorest.Blueprint):
    ARGUMENTS_PARSER = StrictJSONParser()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._prepare_doc_cbks.append(self._prepare_statuses_doc)

    def add_url_rule(
        self, rule, endpoint=None, view_func=None, provide_automatic_options=None, *, statuses=(), **options
    ):
        """statuses: what the view answers beyond operation_statuses' rules (for a MethodView, a dict by method)."""
        super().add_url_rule(rule, endpoint, view_func, provide_automatic_options, **options)
        for method, doc in self._docs[self._endpoints[-1]].items():
            if method != "parameters":
                declared = statuses.get(method, ()) if isinstance(statuses, dict) else statuses
                views = (view_func, getattr(view_func, method, None))  # a MethodView and its method
                any_body = any(getattr(v, "_accepts_any_body", False) for v in views)
                own_body = any(getattr(v, "_raw_body", False) for v in views)
                locations = {p["in"] for p in doc.get("arguments", {}).get("parameters", [])}
                if method in ("post", "put", "patch") and not (locations & BODY_LOCATIONS or any_body or own_body):
                    # read by webapp.refuse_ignored_body: a body sent anyway must be empty JSON, not ignored unread
                    view_func._bodyless = getattr(view_func, "_bodyless", frozenset()) | {method.upper()}
                if "query" not in locations and not any(getattr(v, "_raw_query", False) for v in views):
                    # read by webapp.refuse_unread_query: a parameter it does not take is named, not ignored
                    view_func._queryless = getattr(view_func, "_queryless", frozenset()) | {method.upper()}
                doc["need"] = need_of(view_func, method.upper())
                doc["member_only"] = member_only(view_func, method.upper())
                doc["browser"] = browser_allowed(view_func, method.upper())
                doc["guarded"] = doc["need"] is not None
                doc["statuses"] = operation_statuses(
                    rule,
                    method,
                    doc,
                    declared,
                    guarded=doc["guarded"],
                    any_body=any_body,
                )

    def route(self, rule, *, aliases=(), need=None, browser=False, member_only=False, session_cookie=False, **options):
        """aliases: more paths for the same view, each registered and documented like rule, as endpoint <name>_alias[_n].
        need: the permission the route needs when not the method's default (webapp/access.py); browser: write keys,
        the credentials a web page carries, may call it; member_only: API credentials may not, whatever their scopes;
        session_cookie: the console's session cookie signs a member in here too (webapp/access.py session_cookie)."""

        def decorator(func):
            if need is not None:
                assert need in NEEDS, need
                func._need = need
            if browser:
                func._browser = True
            if member_only:
                func._member_only = True
            if session_cookie:
                func._session_cookie = True
            endpoint = options.pop("endpoint", None) or func.__name__
            super(Blueprint, self).route(rule, endpoint=endpoint, **options)(func)
            for n, alias in enumerate(aliases):
                super(Blueprint, self).route(alias, endpoint=f"{endpoint}_alias" + (f"_{n}" if n else ""), **options)(
                    func
                )
            return func

        return decorator

    @staticmethod
    def _prepare_statuses_doc(doc, doc_info, **_):
        responses = doc.setdefault("responses", {})
        responses.pop(422, None)  # webargs documents its 422; errors.handle_http_exception answers those 400
        documented = {int(code) for code in responses if code != "default"}
        for status in doc_info["statuses"] - documented:
            responses[status] = HTTPStatus(status).name if status >= 400 else {"description": HTTPStatus(status).phrase}
        doc["responses"] = dict(sorted(responses.items(), key=lambda item: str(item[0])))  # by status, "default" last
        if doc_info["guarded"]:
            doc["security"] = AUTH_SCHEMES
            doc["x-permission"] = permission_doc(doc_info["need"], doc_info["member_only"], doc_info["browser"])
        return doc

    def arguments(self, schema, *args, **kwargs):
        """Pass webargs an instance: given a class it builds a new schema on every request (~0.1 ms)."""
        return super().arguments(schema() if isinstance(schema, type) else schema, *args, **kwargs)


SWAGGER_UI_DIST = files("flask_swagger_ui") / "dist"
SWAGGER_UI_START = files("webapp") / "swagger_ui_start.js"
SWAGGER_UI_START_PATH = "leadpulse-start.js"

# flask-smorest's page starts Swagger UI with an inline script, which the pages' Content-Security-Policy
# (worker/http_policy.py) refuses; this one hands the spec URL and the settings over in data attributes to a script
# file of our own.
SWAGGER_UI_PAGE = """<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<link href="{{ swagger_ui_url }}swagger-ui.css" rel="stylesheet" type="text/css">
</head>
<body>
<div id="swagger-ui-container" data-spec-url="{{ spec_url }}" data-config='{{ swagger_ui_config | tojson }}'></div>
<script src="{{ swagger_ui_url }}swagger-ui-bundle.js"></script>
<script src="{{ swagger_ui_url }}swagger-ui-standalone-preset.js"></script>
<script src="{{ swagger_ui_url }}{{ start }}"></script>
</body>
</html>
"""


def swagger_ui_asset(filename: str):
    """Swagger UI's scripts and styles from the installed package: /docs works on a machine with no internet."""
    if filename == SWAGGER_UI_START_PATH:
        return flask.send_file(SWAGGER_UI_START, mimetype="text/javascript")
    return flask.send_from_directory(SWAGGER_UI_DIST, filename)


ANY_OBJECT_OR_NULL = {"type": "object", "nullable": True}


def nullable_nested(self, field, ret, **_) -> dict:
    """A nested schema or null, as OpenAPI 3.0 says it (allOf the schema, nullable): apispec's anyOf with a bare
    nullable object would let any object through where the nested schema's shape is due."""
    branches = ret.get("anyOf")
    if isinstance(field, fields.Nested) and branches and ANY_OBJECT_OR_NULL in branches:
        del ret["anyOf"]
        ret.update(allOf=[b for b in branches if b != ANY_OBJECT_OR_NULL], nullable=True)
    return {}


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ErrorSchema

    def _init_spec(self, **kwargs):
        super()._init_spec(**kwargs)
        self.ma_plugin.converter.add_attribute_function(nullable_nested)

    def _register_responses(self):
        """One response per status, each with ErrorSchema and what the status means here."""
        for status in HTTPStatus:
            response = {"description": ERROR_DESCRIPTIONS.get(status, status.phrase)}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
            if status == HTTPStatus.TOO_MANY_REQUESTS:
                response["headers"] = {
                    "Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
                }
            prepare_response(response, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Unexpected error (500 internal_error)", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, self.DEFAULT_RESPONSE_CONTENT_TYPE)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, response, lazy=True)

    def _register_swagger_ui_rule(self, blueprint):
        """Serve Swagger UI's assets at OPENAPI_SWAGGER_UI_URL when it is a path of this app."""
        super()._register_swagger_ui_rule(blueprint)
        url = self.config.get("OPENAPI_SWAGGER_UI_URL") or ""
        if url.startswith("/") and not url.startswith("//"):
            blueprint.add_url_rule(url + "<path:filename>", endpoint="swagger_ui_asset", view_func=swagger_ui_asset)

    def _openapi_swagger_ui(self):
        """/docs without an inline script (SWAGGER_UI_PAGE)."""
        return flask.render_template_string(
            SWAGGER_UI_PAGE,
            title=self.spec.title,
            spec_url=flask.url_for(f"{self._make_doc_blueprint_name()}.openapi_json"),
            swagger_ui_url=self._swagger_ui_url,
            swagger_ui_config=self.config.get("OPENAPI_SWAGGER_UI_CONFIG", {}),
            start=SWAGGER_UI_START_PATH,
        )
