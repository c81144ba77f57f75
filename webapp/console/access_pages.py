"""Sources and access: webhook sources (Standard Webhooks, Segment, HubSpot) and API credentials, made through the same
code as the API (SourceCrud, make_credential); a new source's secret or a credential's secret is shown once, with
snippets that work as shown (tests/test_console.py runs them)."""

from __future__ import annotations

import json

from flask import request

from models.tenancy import ApiCredential
from models.webhooks import WebhookSource
from webapp.app_state import db, external_url
from webapp.console.base import FormErrors, form_errors, form_values, load, page, render, see_other
from webapp.crud import get_scoped, scoped
from webapp.errors import ApiError
from webapp.resources.secrets_routes import SecretInSchema
from webapp.resources.webhooks import WebhookSourceSchema
from webapp.services.credentials import make_credential, revoke_credential
from webapp.services.webhooks import SourceCrud

SOURCE_FIELDS = ("name", "kind", "description", "client_secret")
SOURCE_KINDS = {
    "standard": "Signed webhooks (Standard Webhooks)",
    "segment": "Segment",
    "hubspot": "HubSpot app webhooks",
}
SCOPE_NAMES = {"ingest": "ingest: send events", "read": "read: leads, events, scores", "admin": "admin: configure"}
SOURCES = SourceCrud()
SAMPLE_EVENT = {"lead_id": "crm-42", "event_type": "page_view", "metadata": {"url": "/pricing"}}


def _listing(template: str, model, status: int, **context):
    """A page of the OU's sources or credentials, oldest first, with what a form or a creation adds to it."""
    rows = db().execute(scoped(model).order_by(model.created_at)).scalars().all()
    for name in ("values", "snippets"):
        context[name] = context.get(name) or {}
    return render(template, status, rows=rows, active="access", **context)


def _sources_page(status=200, **context):
    return _listing(
        "sources.html",
        WebhookSource,
        status,
        kinds=SOURCE_KINDS,
        delivery_url=lambda s: external_url(WebhookSourceSchema().delivery_url(s)),
        **context,
    )


@page("/sources")
def sources():
    return _sources_page(done={k: request.args[k] for k in ("deleted",) if request.args.get(k)} or None)


@page("/sources", methods=("POST",))
def create_source():
    values = form_values(SOURCE_FIELDS)
    try:
        made = SOURCES.create(load(WebhookSourceSchema(), values))
    except FormErrors as exc:
        return _sources_page(exc.status, errors=exc, values=_without_secret(values))
    except ApiError as exc:
        return _sources_page(exc.status, errors=form_errors(exc), values=_without_secret(values))
    return _sources_page(201, made=made, snippets=source_snippets(made))


def _without_secret(values: dict) -> dict:
    """A refused form comes back without the secret typed into it: a page never carries one back."""
    return {k: v for k, v in values.items() if k != "client_secret"}


@page("/sources/<source_id>/delete", methods=("POST",))
def delete_source(source_id):
    source = get_scoped(WebhookSource, source_id, "webhook source")
    SOURCES.delete(source.id)
    return see_other("sources", deleted=source.name)


def source_snippets(source) -> dict[str, str]:
    """How to send a first event to a new source, with its secret, exactly as it can be pasted."""
    url = external_url(WebhookSourceSchema().delivery_url(source))
    if source.kind == "segment":
        track = {"type": "track", "userId": "crm-42", "event": "page_view", "properties": {"url": "/pricing"}}
        return {
            "curl": f"curl -s -u '{source.write_key}:' -H 'Content-Type: application/json' "
            f"{url}/v1/track -d '{json.dumps(track)}'",
            "python": "from segment.analytics import Client\n\n"
            f'client = Client("{source.write_key}", host="{url}")\n'
            'client.track("crm-42", "page_view", {"url": "/pricing"})\n'
            "client.flush()",
        }
    if source.kind == "hubspot":
        return {"url": url}
    return {
        "python": "import json\nfrom datetime import datetime, timezone\n\nimport requests\n"
        "from standardwebhooks.webhooks import Webhook\n\n"
        f"body = json.dumps({json.dumps(SAMPLE_EVENT)})\n"
        'message_id, now = "msg-1", datetime.now(timezone.utc)\n'
        "headers = {\n"
        '    "webhook-id": message_id,\n'
        '    "webhook-timestamp": str(int(now.timestamp())),\n'
        f'    "webhook-signature": Webhook("{source.secret}").sign(message_id, now, body),\n'
        '    "Content-Type": "application/json",\n'
        "}\n"
        f'print(requests.post("{url}", data=body, headers=headers).status_code)',
    }


def _credentials_page(status=200, **context):
    return _listing("credentials.html", ApiCredential, status, scope_names=SCOPE_NAMES, **context)


@page("/credentials", need="own")
def credentials():
    return _credentials_page(done={k: request.args[k] for k in ("revoked",) if request.args.get(k)} or None)


@page("/credentials", methods=("POST",), need="own")
def create_credential():
    values = form_values(("name", "expires_at"))
    scopes = request.form.getlist("scopes")
    if scopes:
        values["scopes"] = scopes
    origins = [line.strip() for line in (request.form.get("allowed_origins") or "").splitlines() if line.strip()]
    if origins:
        values["allowed_origins"] = origins
    shown = {**values, "allowed_origins": "\n".join(origins)}
    try:
        made = make_credential(load(SecretInSchema(), values))
    except FormErrors as exc:
        return _credentials_page(exc.status, errors=exc, values=shown)
    except ApiError as exc:
        return _credentials_page(exc.status, errors=form_errors(exc), values=shown)
    return _credentials_page(201, made=made, snippets=credential_snippets(made))


@page("/credentials/<secret_id>/delete", methods=("POST",), need="own")
def delete_credential(secret_id):
    revoked = revoke_credential(secret_id)
    return see_other("credentials", revoked=revoked.name)


def credential_snippets(cred) -> dict[str, str]:
    """A first event with the new credential, as it can be pasted."""
    url = external_url("/ingest")
    if cred.client_secret is None:  # a write key: what a page of one of its origins runs
        return {
            "javascript": f'fetch("{url}", {{\n  method: "POST",\n'
            f'  headers: {{"Content-Type": "application/json", "Authorization": "Basic " + btoa("{cred.client_id}:")}},\n'
            f"  body: JSON.stringify({json.dumps(SAMPLE_EVENT)}),\n}});"
        }
    return {
        "curl": f"curl -s -u '{cred.client_id}:{cred.client_secret}' -H 'Content-Type: application/json' "
        f"{url} -d '{json.dumps(SAMPLE_EVENT)}'"
    }
