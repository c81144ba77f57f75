"""The console's blueprint and what every page shares: how a page route is declared (webapp/access.py's table applies
as to any route), rendering with the CSRF token and the caller's permissions, forms read into the API's schemas, and
errors shown as pages (docs/console.md)."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, g, make_response, redirect, render_template, request, url_for
from marshmallow import ValidationError

from models.tenancy import OrgUnit
from webapp import access, csrf
from webapp.app_state import db
from webapp.errors import ApiError

PREFIX = "/app"
bp = Blueprint("console", __name__, url_prefix=PREFIX, template_folder="templates")


def page(rule: str, methods=("GET",), *, need: str | None = None, public: bool = False):
    """A console route: members only (API credentials are refused), signed in by the session cookie or a Bearer
    token; need as for any route (GET reads, anything else configures unless it says otherwise)."""

    def decorator(view):
        if public:
            view._public = True
        else:
            view._member_only = True
            view._session_cookie = True
            if need is not None:
                assert need in access.NEEDS, need
                view._need = need
        view._accepts_any_body = True  # forms, not JSON (webapp.require_json_body)
        bp.add_url_rule(rule, view_func=view, methods=list(methods))
        return view

    return decorator


def principal():
    return g.get("principal")


def can(need: str) -> bool:
    """Whether the caller may do what a control leads to: a Viewer is shown no edit controls (and refused anyway)."""
    p = principal()
    return p is not None and need in p.grants


def render(template: str, http_status: int = 200, **context):
    p = principal()
    context.setdefault("csrf_token", csrf.session_token(p.session_id) if p and p.session_id else "")
    unit = db().get(OrgUnit, p.unit_id) if p and p.unit_id else None
    context.setdefault("unit_name", unit.name if unit else None)
    resp = make_response(render_template(f"console/{template}", me=p, can=can, **context), http_status)
    resp.headers["Cache-Control"] = "no-store"  # a page shows an OU's data: never kept by a shared cache
    errors = context.get("errors")
    if isinstance(errors, FormErrors) and errors.retry_after:
        resp.headers["Retry-After"] = errors.retry_after
    return resp


def redirect_to(location: str):
    """Post/redirect/get: a form's success lands on a page a reload does not post again."""
    return redirect(location, 303)


def see_other(endpoint: str, **values):
    return redirect_to(url_for(f"console.{endpoint}", **values))


def local_next(value: str | None) -> str | None:
    """A place in the console to return to after signing in; anything else (another site) is ignored."""
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return None


def sign_in_url() -> str:
    here = request.full_path.rstrip("?") if request.method == "GET" else None
    query = {"next": here} if local_next(here) else {}
    return url_for("console.sign_in") + ("?" + urlencode(query) if query else "")


class FormErrors(Exception):
    """A form's bad input, by field, for the page to show beside each field."""

    def __init__(
        self,
        fields: dict[str, list[str]],
        message: str = "Please correct the fields marked below.",
        status=400,
        retry_after: str | None = None,
    ):
        super().__init__(message)
        self.fields, self.message, self.status = fields, message, status
        self.retry_after = retry_after  # a refusal for now (a rate limit, ours or Slack's): the page says when to retry


def form_values(names, ints=(), nullable=(), source=None) -> dict:
    """The submitted form (or source: the query of a GET form) as the API's JSON would carry it: blank fields left out
    (or null where the API takes null), numbers as numbers (a field that is not one stays text, for the schema to
    name)."""
    source = request.form if source is None else source
    out = {}
    for name in names:
        value = source.get(name)
        if value is None:
            continue
        value = value.strip()
        if value == "":
            if name in nullable:
                out[name] = None
            continue
        if name in ints:
            try:
                value = int(value)
            except ValueError:
                pass
        out[name] = value
    return out


def flags(names, source=None) -> dict:
    """Checkboxes as the API's booleans: each posts a hidden "false" before it, so a box left unticked says false and
    a post without the field (a script's, an old page's) changes nothing."""
    source = request.form if source is None else source
    said = {name: source.getlist(name)[-1] for name in names if source.getlist(name)}
    return {name: CHECKBOX.get(value, value) for name, value in said.items()}  # another value: the schema names it


CHECKBOX = {"true": True, "false": False}


def _flat(messages: dict, parent: str = "") -> dict[str, list[str]]:
    """A nested schema's complaints by dotted path ("outcome.event_type"), as a form names its fields; a list's items
    are the list's field (a form has one control for them all)."""
    out: dict[str, list[str]] = {}
    for key, value in messages.items():
        name = parent if isinstance(key, int) and parent else f"{parent}.{key}" if parent else str(key)
        found = _flat(value, name) if isinstance(value, dict) else {name: value if isinstance(value, list) else [value]}
        for field, said in found.items():
            out.setdefault(field, []).extend(str(m) for m in said)
    return out


def load(schema, data: dict) -> dict:
    """data through the API's own schema; its complaints become FormErrors."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise FormErrors(_flat(exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}))


def form_errors(exc: ApiError) -> FormErrors:
    """What a service refused, as the form shows it: the API's message beside the field it names."""
    fields = {k: [str(m) for m in v] for k, v in (exc.details or {}).items()} or {"_schema": [exc.message]}
    return FormErrors(fields, exc.message, exc.status, exc.headers.get("Retry-After"))


def attempt(action):
    """(what action returns, None), or (None, the form's errors) when the API's schema or service refused it: the one
    place a refusal becomes what a form shows beside its fields."""
    try:
        return action(), None
    except FormErrors as exc:
        return None, exc
    except ApiError as exc:
        return None, form_errors(exc)
