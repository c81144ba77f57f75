"""Every response the suite gets from the app, held to the OpenAPI document: its status declared for its operation,
an error's body in the envelope the document gives it, a success in a documented content type and, when JSON, with
the body its schema describes (as the fuzz, tests/test_fuzz_openapi.py, checks it)."""

from __future__ import annotations

import schemathesis
from flask.testing import FlaskClient
from flask_smorest.spec.plugins import FlaskPlugin
from werkzeug.exceptions import HTTPException
from werkzeug.test import run_wsgi_app
from werkzeug.wrappers import Request, Response

from webapp.blueprint import ErrorSchema
from webapp.console.base import PREFIX as CONSOLE

ERROR_REF = "#/components/schemas/Error"  # 500 internal_error, the unexpected, is the operations' "default"
NOT_OPERATIONS = ("api-docs.", "static")  # the document and its UI are not operations of the API


def is_console_page(path: str) -> bool:
    """The console's pages (tests/test_console.py holds them to their own rules: HTML, errors as pages)."""
    return path == CONSOLE or path.startswith(CONSOLE + "/")


class Seen:
    """(method, url rule) -> status -> one path that answered it; bodies outside what the document gives them."""

    def __init__(self):
        self.answers: dict[tuple[str, str], dict[int, str]] = {}
        self.bad_bodies: list[str] = []
        self.spec: dict | None = None
        self.document = None  # the spec as schemathesis reads it, for the bodies of successes

    def record(self, app, response) -> None:
        if "leadpulse" not in app.extensions:  # a fake service's app, not ours
            return
        request, status = response.request, response.status_code
        method = "GET" if request.method == "HEAD" else request.method
        if is_console_page(request.path):
            return
        if status >= 400:
            self.check_error_body(f"{request.method} {request.path}", response)
        if method == "OPTIONS":  # Flask answers it for every rule by itself
            return
        try:
            rule, _ = app.url_map.bind("localhost").match(request.path, method=method, return_rule=True)
        except HTTPException:  # no such path, or not this method: no operation to hold it to
            return
        if rule.endpoint.startswith(NOT_OPERATIONS):
            return
        if self.spec is None:
            self.spec = app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()
        self.answers.setdefault((method.lower(), rule.rule), {}).setdefault(status, request.full_path.rstrip("?"))
        if 200 <= status < 300 and status != 204 and request.method != "HEAD":
            self.check_success_body(f"{request.method} {request.path}", method.lower(), rule.rule, response)

    def check_error_body(self, where: str, response) -> None:
        body = response.get_json(silent=True) if response.is_json else None
        problems = ErrorSchema().validate(body) if isinstance(body, dict) else {"body": "not a JSON object"}
        if problems and len(self.bad_bodies) < 50:
            self.bad_bodies.append(
                f"{where} answered {response.status_code} with {response.get_data()[:200]!r}: {problems}"
            )

    def check_success_body(self, where: str, method: str, rule: str, response) -> None:
        """Its content type one the operation documents for the status; a JSON body valid under its schema (other
        bodies, streamed, are the fuzz's to read)."""
        path = FlaskPlugin.flaskpath2openapi(rule)
        declared = self.spec["paths"].get(path, {}).get(method, {}).get("responses", {}).get(str(response.status_code))
        if declared is None or len(self.bad_bodies) >= 50:  # an undeclared status: problems() says so
            return
        content = declared.get("content", {})
        if response.mimetype not in content:
            self.bad_bodies.append(
                f"{where} answered {response.status_code} in {response.mimetype}: not in {list(content)}"
            )
            return
        if not response.is_json:  # JSON is read whole; a CSV export or an event stream may never end
            return
        if self.document is None:
            self.document = schemathesis.openapi.from_dict(self.spec)
        try:
            self.document[path][method].validate_response(schemathesis.Response.from_wsgi(response))
        except Exception as exc:  # schemathesis names what differs
            self.bad_bodies.append(f"{where} answered {response.status_code} unlike its document: {str(exc)[:1500]}")

    def problems(self, spec: dict | None = None) -> list[str]:
        """What the document does not say about what was seen (spec: the document, by default the app's own)."""
        spec = spec or self.spec
        out = list(self.bad_bodies)
        for (method, rule), statuses in sorted(self.answers.items()):
            path = FlaskPlugin.flaskpath2openapi(rule)
            operation = spec["paths"].get(path, {}).get(method)
            if operation is None:
                out.append(f"{method.upper()} {path} is not in the OpenAPI document")
                continue
            declared = operation["responses"]
            for status, example in sorted(statuses.items()):
                response = declared.get(str(status), declared.get("default") if status == 500 else None)
                if response is None:
                    out.append(
                        f"{method.upper()} {path} answered {status} ({example}) but the document declares only "
                        f"{', '.join(k for k in declared if k != 'default')}"
                    )
                elif status >= 400 and _schema_ref(spec, response) != ERROR_REF:
                    out.append(f"{method.upper()} {path} documents {status} without the error envelope {ERROR_REF}")
        return out


def _schema_ref(spec: dict, response: dict) -> str | None:
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")


SEEN = Seen()


def recorded(app):
    """app as a WSGI callable whose every response is recorded in SEEN, for servers that are not the test client
    (a live HTTP server in a thread): each response is buffered first, so not for a stream."""

    def wsgi(environ, start_response):
        app_iter, status, headers = run_wsgi_app(app, environ, buffered=True)
        response = Response(app_iter, status, headers)
        response.request = Request(environ)
        SEEN.record(app, response)
        return response(environ, start_response)

    return wsgi


class DocumentedClient(FlaskClient):
    """Flask's test client, recording every response (and each redirect it followed) in SEEN."""

    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        for answered in (*response.history, response):
            SEEN.record(self.application, answered)
        return response
