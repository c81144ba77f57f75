"""Flask app factory: one blueprint per resource, JSON errors, auth resolved before every view."""

from __future__ import annotations

import logging

from flask import Flask, current_app, request

from config import Settings
from webapp import auth, console, cors, errors, rate_limits, request_log
from webapp.app_state import AppState, close_db
from webapp.blueprint import Api, strict_json_loads
from webapp.ingest_lane import IngestLane
from worker.http_policy import security_headers

JSON_TYPES = ("application/json",)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config.update(
        API_TITLE="LeadPulse",
        API_VERSION="1.0.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="/docs/assets/",  # served by the app from the flask-swagger-ui package
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None},  # no badge fetched from swagger.io
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,
        JSON_SORT_KEYS=False,
    )
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    app.extensions["leadpulse"] = AppState(settings)
    api = Api(
        app,
        spec_kwargs={
            "components": {
                "securitySchemes": {
                    "basicAuth": {"type": "http", "scheme": "basic"},
                    "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                }
            }
        },
    )
    errors.register(app)

    from webapp.resources import all_blueprints  # here: the blueprints import this package's modules back

    for blp in all_blueprints():
        api.register_blueprint(blp)
    console.install(app)  # pages at /app, not operations of the API: outside the OpenAPI document

    request_log.install(app)  # first: its timer starts before any other hook can refuse the request
    app.before_request(rate_limits.limit_address)  # then a flood is refused before anything is looked up for it
    app.before_request(refuse_nul_in_path)
    app.before_request(require_json_body)
    app.before_request(auth.load_principal)
    app.before_request(rate_limits.limit_caller)
    app.before_request(refuse_unread_query)  # what the caller sent is read only once it is known and within limits
    app.before_request(refuse_ignored_body)
    app.after_request(cors.allow_write_key_origins)
    app.after_request(rate_limits.add_headers)
    app.teardown_appcontext(auth.record_use)  # registered first so it runs last: after close_db
    app.teardown_appcontext(close_db)
    app.after_request(with_security_headers(settings.development))
    app.wsgi_app = IngestLane(app, app.wsgi_app)
    try:  # now, not inside a request's write transaction (on SQLite that would wait on itself)
        _ = app.extensions["leadpulse"].secret_key, app.extensions["leadpulse"].client_id_key
    except Exception as exc:  # not migrated yet: loaded on first use instead
        logging.getLogger("leadpulse").debug("secret key not loaded at start: %s", exc)
    return app


def with_security_headers(development: bool):
    """Every answer of the app, errors included, carries the security headers; a page gets the page CSP."""
    api, page = security_headers(development), security_headers(development, page=True)

    def add(response):
        for name, value in page if response.mimetype == "text/html" else api:
            response.headers.setdefault(name, value)
        return response

    return add


def refuse_nul_in_path():
    """No stored id contains a NUL, and the database would choke comparing one: answer 404 at once."""
    if request.view_args and any("\x00" in str(v) for v in request.view_args.values()):
        raise errors.not_found("object")


def _view():
    """The view the request is routed to (None: no route), whose marks (webapp/blueprint.py) the hooks below read."""
    return current_app.view_functions.get(request.endpoint) if request.url_rule is not None else None


def refuse_unread_query():
    """A query parameter on an operation that takes none is named (400), as an unknown one is where it takes some:
    ignored, a misspelt parameter would answer something else without a word."""
    if request.args and request.method in getattr(_view(), "_queryless", ()):
        names = sorted(set(request.args))[:20]
        raise errors.ApiError(
            400,
            "validation_error",
            f"this operation takes no query parameter: {', '.join(names)}",
            {name[:100]: ["Unknown field."] for name in names},
        )


def require_json_body():
    """A body that is not JSON on a JSON endpoint is a 415, not a confusing 'missing field'."""
    if request.method not in ("POST", "PUT", "PATCH") or request.url_rule is None:
        return
    if getattr(_view(), "_accepts_any_body", False):
        return
    has_body = (request.content_length or 0) > 0 or request.headers.get("Transfer-Encoding") == "chunked"
    if has_body and not request.is_json:
        raise errors.ApiError(
            415, "unsupported_media_type", f"expected Content-Type application/json, got {request.mimetype or 'none'}"
        )


def refuse_ignored_body():
    """A body sent to an operation that takes none is not ignored unread: malformed JSON is malformed, and anything but
    {} or null is named. An empty body (a chunked one too) is no body."""
    if request.method not in getattr(_view(), "_bodyless", ()):
        return
    data = request.get_data(cache=True)  # bounded like every body (webapp/request_limits.py)
    if not data:
        return
    try:
        body = strict_json_loads(data)
    except ValueError:
        raise errors.ApiError(400, "malformed_json", "request body is not valid JSON")
    if body not in ({}, None):
        message = "this operation takes no body: send none, or {}"
        raise errors.ApiError(400, "validation_error", message, {"body": [message]})
