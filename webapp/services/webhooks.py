"""Webhook sources: what creating one stores, finding one, refusing a delivery, and a Standard Webhooks delivery."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets

from marshmallow import ValidationError
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from integrations.secretbox import decrypt, encrypt
from models.webhooks import WebhookSource
from webapp import metrics
from webapp.app_state import db, state
from webapp.auth import plausible_id
from webapp.blueprint import strict_json_loads
from webapp.crud import Crud
from webapp.errors import ApiError
from webapp.rate_limits import limit_source
from webapp.services.ingest import ingested_payload, parse_event, rejection, store

SECRET_PURPOSE = "webhook-source-secret"
STANDARD_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def source_secrets(kind: str, client_secret: str | None) -> tuple[dict, dict]:
    """What a new source stores (a secret encrypted, or a write key's hash) and what its creation answers once."""
    if (kind == "hubspot") != (client_secret is not None):
        raise ApiError(
            400,
            "validation_error",
            "client_secret is required for hubspot sources, and only for them",
            {"client_secret": ["required for kind hubspot only"]},
        )
    if kind == "hubspot":  # HubSpot signs with the app's secret: kept encrypted, never returned
        return {"secret_encrypted": encrypt(state().secret_key, SECRET_PURPOSE, client_secret)}, {}
    if kind == "segment":  # compared, never used to sign: a hash is enough (and looked up by it)
        write_key = "wk_" + secrets.token_urlsafe(24)
        return {"write_key_hash": hash_write_key(write_key)}, {"write_key": write_key}
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    return {"secret_encrypted": encrypt(state().secret_key, SECRET_PURPOSE, secret)}, {"secret": secret}


def hash_write_key(write_key: str) -> str:
    return hashlib.sha256(write_key.encode()).hexdigest()


def source_secret(source: WebhookSource) -> str | None:
    """The source's signing secret; None once SECRET_KEY has changed since the source was created."""
    return decrypt(state().secret_key, SECRET_PURPOSE, source.secret_encrypted)


def find_source(source_id: str, kind: str) -> WebhookSource | None:
    return (
        db().execute(select(WebhookSource).where(WebhookSource.id == source_id, WebhookSource.kind == kind)).scalar()
        if plausible_id(source_id, 36)
        else None
    )


def reject(status: int, reason: str, message: str, details: dict | None = None, source: str = "standard") -> ApiError:
    """A refused delivery, counted by source and reason."""
    metrics.WEBHOOKS_REJECTED.labels(source=source, reason=reason).inc()
    return ApiError(status, reason, message, details)


def standard_source(source_id: str) -> WebhookSource:
    source = find_source(source_id, "standard")
    if source is None:
        raise reject(404, "unknown_source", "no webhook source has this id")
    return source


def receive_standard(source: WebhookSource, body: bytes, headers: dict[str, str]) -> dict:
    """Verify the signature over the raw body (5-minute tolerance both ways), then ingest with webhook-id as the key; the 202 body."""
    secret = source_secret(source)
    missing = [k for k, v in headers.items() if not v]
    if missing:
        raise reject(
            400, "missing_signature_headers", f"missing {', '.join(missing)}", {k: ["required"] for k in missing}
        )
    if secret is None:  # SECRET_KEY changed since the source was created
        raise reject(401, "bad_signature", "this source's secret can no longer be read; create the source again")
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except WebhookVerificationError as exc:
        reason = "stale_timestamp" if "timestamp too" in str(exc) else "bad_signature"
        raise reject(
            401,
            reason,
            f"signature refused: {exc}",
            {"webhook-timestamp" if reason == "stale_timestamp" else "webhook-signature": [str(exc)]},
        )
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:  # malformed header or body the library trips on
        raise reject(
            401,
            "bad_signature",
            "signature refused: malformed signature header or body",
            {"webhook-signature": [exc.__class__.__name__]},
        )
    limit_source(state(), source.id)  # only a delivery the source signed counts against it
    try:
        incoming = parse_event(
            strict_json_loads(body), state().settings.max_metadata_bytes, headers["webhook-id"], "webhook-id"
        )
    except json.JSONDecodeError as exc:
        raise reject(400, "malformed_json", f"body is not valid JSON: {exc.msg}")
    except (ValidationError, ApiError) as exc:
        error = rejection(exc)
        raise reject(getattr(exc, "status", 400), error["code"], error["message"], error["details"])
    return ingested_payload(incoming, store([incoming], source.org_id, source.unit_id)[0])


class SourceCrud(Crud):
    model = WebhookSource
    label = "webhook source"

    def create(self, data):
        stored, shown = source_secrets(data["kind"], data.pop("client_secret", None))
        source = super().create({**data, **stored})
        for name, value in shown.items():  # transient: exists only in this response, never stored in the clear
            setattr(source, name, value)
        return source

    def validate(self, session, obj, creating):
        self.refuse_duplicate(
            session, obj, "name", WebhookSource.unit_id == obj.unit_id, WebhookSource.name == obj.name
        )
