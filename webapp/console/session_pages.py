"""Signing in and out of the console, picking the active OU, and the console's own scripts and styles.

Signing in is the API's login (webapp/services/login.py: the same lockout, audit entry and session row); the console
keeps the token in an HttpOnly cookie instead of handing it to a script."""

from __future__ import annotations

from importlib.resources import files

from flask import request, send_from_directory, url_for

from models.members import member_units
from webapp import csrf
from webapp.app_state import db, state
from webapp.auth import ACTIVE_OU_COOKIE, SESSION_COOKIE, select_unit
from webapp.console.base import FormErrors, load, local_next, page, principal, redirect_to, render, see_other
from webapp.cookies import delete_cookie, set_cookie
from webapp.errors import ApiError
from webapp.rate_limits import request_address
from webapp.resources.auth_routes import LoginSchema
from webapp.services.login import log_in, log_out

STATIC = files("webapp.console") / "static"
ASSET_SECONDS = 3600  # the files' names carry no hash; an hour keeps a release's change from lingering


@page("/static/<path:filename>", public=True)
def asset(filename):
    """The console's scripts (htmx among them) and styles, served by the app: it works on a machine with no internet."""
    return send_from_directory(STATIC, filename, max_age=ASSET_SECONDS)


def _sign_in_page(status=200, errors: FormErrors | None = None, email: str = ""):
    nonce = request.cookies.get(csrf.PRESESSION_COOKIE) or csrf.new_nonce()
    resp = render(
        "sign_in.html",
        status,
        csrf_token=csrf.presession_token(nonce),
        errors=errors,
        email=email,
        next=local_next(request.values.get("next")) or "",
    )
    set_cookie(resp, csrf.PRESESSION_COOKIE, nonce, max_age=3600, path=url_for("console.sign_in"))
    return resp


@page("/sign-in", public=True)
def sign_in():
    return _sign_in_page()


@page("/sign-in", methods=("POST",), public=True)
def sign_in_post():
    email = (request.form.get("email") or "").strip()
    try:
        csrf.require_presession()
        data = load(
            LoginSchema(), {k: v for k, v in (("email", email), ("password", request.form.get("password"))) if v}
        )
        member, token, _ = log_in(data["email"], data["password"], request_address())
    except FormErrors as exc:
        return _sign_in_page(400, exc, email)
    except ApiError as exc:  # a wrong password (401), a hold (429), Redis away (503), an expired form (403)
        errors = FormErrors({"_schema": [exc.message]}, exc.message, exc.status, exc.headers.get("Retry-After"))
        return _sign_in_page(exc.status, errors, email)
    resp = redirect_to(_landing(member, local_next(request.form.get("next"))))
    if len(units_of(member)) == 1:
        select_unit(resp, units_of(member)[0])
    set_cookie(resp, SESSION_COOKIE, token, max_age=state().settings.token_minutes * 60)
    delete_cookie(resp, csrf.PRESESSION_COOKIE, path=url_for("console.sign_in"))
    return resp


def units_of(member) -> list[str]:
    return [unit.id for unit, _ in member_units(db(), member.id)]


def _landing(member, wanted: str | None) -> str:
    """Where a member lands once signed in: where it was going, in the OU it had picked (or its only one); else the
    OU picker first."""
    units = units_of(member)
    if len(units) == 1 or request.cookies.get(ACTIVE_OU_COOKIE) in units:
        return wanted or url_for("console.leads")
    return url_for("console.units", **({"next": wanted} if wanted else {}))


@page("/sign-out", methods=("POST",), need="member")
def sign_out():
    """Ends this login everywhere (its token stops working at once) and forgets the console's cookies."""
    log_out(principal().session_id)
    resp = see_other("sign_in")
    delete_cookie(resp, SESSION_COOKIE)
    delete_cookie(resp, ACTIVE_OU_COOKIE)
    return resp


@page("/", need="member")
def index():
    """The Leads page once an OU is picked; the OU picker first."""
    return see_other("leads" if principal().unit_id is not None else "units")


@page("/units", need="member")
def units():
    return _units_page()


def _units_page(status=200, errors: FormErrors | None = None):
    p = principal()
    return render(
        "units.html",
        status,
        units=member_units(db(), p.member_id),
        errors=errors,
        next=local_next(request.values.get("next")) or "",
    )


@page("/units", methods=("POST",), need="member")
def units_post():
    """Select the active OU (the activeOu cookie, as POST /org-units/active sets it)."""
    p = principal()
    chosen = request.form.get("ouId", "")
    if chosen not in {unit.id for unit, _ in member_units(db(), p.member_id)}:
        problem = "Pick one of your organization units." if not chosen else "You are not a member of that unit."
        return _units_page(400, FormErrors({"ouId": [problem]}, problem))
    resp = redirect_to(local_next(request.form.get("next")) or url_for("console.leads"))
    select_unit(resp, chosen)
    return resp
