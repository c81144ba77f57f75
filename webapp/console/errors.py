"""Errors under /app are pages, never JSON or a stack trace: no login sends you to sign in, no active OU to the OU
picker, a refusal or a missing object (another OU's included) is a page that says so with the status it is."""

from __future__ import annotations

from flask import request, url_for
from werkzeug.exceptions import HTTPException

from webapp import errors
from webapp.auth import SESSION_COOKIE
from webapp.console.base import PREFIX, redirect_to, render, sign_in_url
from webapp.cookies import delete_cookie
from webapp.errors import ApiError, as_api_error
from worker.http_policy import HTTP_CODES

TITLES = {
    400: "That did not work",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    413: "Too large",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Busy right now",
}
NOT_FOUND = "There is nothing here in this organization unit. It may have been deleted, or the link may be wrong."


def in_console() -> bool:
    return request.path == PREFIX or request.path.startswith(PREFIX + "/")


def page_for(exc: ApiError):
    """The page an error of a console request shows."""
    if exc.status == 401:
        resp = redirect_to(sign_in_url())
        if request.cookies.get(SESSION_COOKIE):  # ended or expired: forget it
            delete_cookie(resp, SESSION_COOKIE)
        return resp
    if exc.code == "no_active_ou":
        return redirect_to(
            url_for("console.units", **({"next": request.full_path.rstrip("?")} if request.method == "GET" else {}))
        )
    message = NOT_FOUND if exc.status == 404 else exc.message
    extra = {}
    if exc.status >= 500:  # the database may be what failed: the page asks it nothing more
        extra["unit_name"] = None
    resp = render(
        "error.html",
        exc.status,
        **extra,
        status=exc.status,
        code=exc.code,
        title=TITLES.get(exc.status, "That did not work"),
        message=message,
    )
    for name, value in exc.headers.items():
        if name.lower() != "www-authenticate":  # a browser would pop up its own login box
            resp.headers[name] = value
    return resp


def install(app) -> None:
    """Console requests get pages; every other request keeps the JSON handlers (webapp/errors.py)."""

    def on_http_exception(exc: HTTPException):
        if not in_console():
            return errors.handle_http_exception(exc)
        code = exc.code or 500
        return page_for(ApiError(code, HTTP_CODES.get(code, "error"), exc.description or exc.name))

    def on_error(exc: Exception):
        if not in_console():
            return errors.handle_error(exc)
        return page_for(as_api_error(exc))

    app.register_error_handler(HTTPException, on_http_exception)
    app.register_error_handler(Exception, on_error)
