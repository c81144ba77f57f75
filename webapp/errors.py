"""JSON errors in one shape, {"error": {"code", "message", "details"}}, for every failure path including the framework's."""

from __future__ import annotations

import logging

from flask import jsonify
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from worker.http_policy import HTTP_CODES, ClientTimeout, error_payload

log = logging.getLogger("leadpulse.errors")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details, self.headers = details or {}, headers or {}


def bad_request(message: str, field: str | None = None, code: str = "validation_error") -> ApiError:
    return ApiError(400, code, message, {field: [message]} if field else None)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def error_body(status: int, code: str, message: str, details: dict | None = None, headers: dict | None = None):
    resp = jsonify(error_payload(code, message, details))
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def field_paths(messages, prefix="") -> dict:
    """webargs nests errors by location and index; clients want field paths."""
    out = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            if key in ("json", "query", "form", "files", "headers", "view_args") and not prefix:
                out.update(field_paths(value, ""))
            else:
                path = f"{prefix}.{key}" if prefix else str(key)
                if isinstance(value, dict):
                    out.update(field_paths(value, path))
                else:
                    out[path] = value if isinstance(value, list) else [value]
    elif isinstance(messages, list):
        out[prefix or "_schema"] = messages
    return out


def handle_http_exception(exc: HTTPException):
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages") or data.get("errors")
    if exc.code == 422 or (exc.code == 400 and messages):
        details = field_paths(messages or {})
        if details.get("_schema") == ["Invalid JSON body."] or details.get("json") == ["Invalid JSON body."]:
            return error_body(400, "malformed_json", "request body is not valid JSON")
        if details.get("_schema") == ["Invalid input type."]:
            return error_body(
                400, "validation_error", "request body must be a JSON object", {"body": ["must be a JSON object"]}
            )
        summary = "; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in details.items())
        return error_body(400, "validation_error", f"invalid input: {summary}", details)
    code = HTTP_CODES.get(exc.code, "error")
    message = data.get("message") or exc.description or exc.name
    # What the framework's own answer would carry beyond its HTML (a 405's Allow, as RFC 9110 requires).
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return error_body(exc.code or 500, code, message, headers=headers)


def handle_api_error(exc: ApiError):
    return error_body(exc.status, exc.code, exc.message, exc.details, exc.headers)


def handle_error(exc: Exception):
    return handle_api_error(as_api_error(exc))


def as_api_error(exc: Exception) -> ApiError:
    """What any failure but an HTTPException answers: the one mapping for Flask's handler and POST /ingest's lane."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ClientTimeout):  # a body read cut by the web server (worker/web_server.py); it then closes
        return ApiError(408, "request_timeout", str(exc))
    if isinstance(exc, (OperationalError, PoolTimeout)):
        # Deadlock victim, serialization failure, lost connection or no pooled connection free in time: retryable.
        log.warning("database unavailable: %s", exc.orig.__class__.__name__ if getattr(exc, "orig", None) else exc)
        return ApiError(
            503, "unavailable", "the database is busy or unreachable; retry shortly", headers={"Retry-After": "1"}
        )
    log.error("unhandled error", exc_info=exc)
    return ApiError(500, "internal_error", "internal server error")


def register(app) -> None:
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_error)
