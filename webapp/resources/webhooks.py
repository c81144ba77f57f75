"""Signed webhook sources (Standard Webhooks): register a source, then it posts events signed with its secret."""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import time

from flask import jsonify, request
from marshmallow import ValidationError, fields, validate
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from integrations.secretbox import decrypt, encrypt
from integrations import hubspot_webhooks as hs_hooks
from integrations import segment as segment_map
from integrations.hubspot import HubSpotAdapter, HubSpotAuthError, HubSpotError
from integrations.hubspot_sync import token_for
from models.base import utcnow
from models.ingest import IncomingEvent, resolve_leads
from models.integrations import HubSpotConnection, HubSpotContact, link_contacts
from models.leads import Lead, merged_metadata
from models.dialect import insert_for
from models.webhooks import HubSpotPendingCreation, HubSpotWebhookEvent, WebhookSource
from webapp import metrics
from webapp.auth import plausible_id, public, require_member
from webapp.blueprint import Blueprint, strict_json_loads
from webapp.content_encoding import decoded_body
from webapp.crud import Crud, register_crud
from webapp.errors import ApiError
from webapp.resources.lead_profile import set_metadata
from webapp.services.event_input import BATCH_MAX
from webapp.services.ingest import Items, ingested_payload, parse_event, rejection, store, store_items
from webapp.schema_base import StrictSchema, UTCDateTime, bad_text
from webapp.app_state import close_db, db, signed_request_url, state

log = logging.getLogger("leadpulse.webhooks")
blp = Blueprint("webhooks", __name__, description="Signed inbound webhooks")
SECRET_PURPOSE = "webhook-source-secret"


class WebhookSourceSchema(StrictSchema):
    id = fields.String(dump_only=True)
    kind = fields.String(load_default="standard", validate=validate.OneOf(["standard", "segment", "hubspot"]),
                         metadata={"description": "standard: Standard Webhooks signatures; segment: Segment's HTTP API; "
                                                  "hubspot: HubSpot app webhooks (v3 signatures)"})
    client_secret = fields.String(load_only=True, validate=validate.Length(min=8, max=200),
                                  metadata={"description": "hubspot sources: the HubSpot app's client secret (write-only)"})
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    description = fields.String(allow_none=True, validate=validate.Length(max=500))
    created_at = UTCDateTime(dump_only=True)
    secret = fields.String(dump_only=True, metadata={"description": "whsec_...; returned once, when the source is created"})
    write_key = fields.String(dump_only=True, metadata={"description": "segment sources: the write key, returned once"})
    url = fields.Method("delivery_url", dump_only=True)

    def delivery_url(self, obj) -> str:
        return {"segment": "/webhooks/segment", "hubspot": f"/webhooks/hubspot?source={obj.id}"}.get(obj.kind, f"/webhooks/events/{obj.id}")


class WebhookSourceUpdateSchema(WebhookSourceSchema):
    """PUT renames or redescribes; kind and secret never change (create a new source to rotate a secret)."""

    class Meta:
        exclude = ("kind", "client_secret")


class SourceCrud(Crud):
    model = WebhookSource
    label = "webhook source"

    def create(self, data):
        client_secret = data.pop("client_secret", None)
        if (data["kind"] == "hubspot") != (client_secret is not None):
            raise ApiError(400, "validation_error", "client_secret is required for hubspot sources, and only for them",
                           {"client_secret": ["required for kind hubspot only"]})
        if data["kind"] == "hubspot":  # HubSpot signs with the app's secret: kept encrypted, never returned
            return super().create({**data, "secret_encrypted": encrypt(state().secret_key, SECRET_PURPOSE, client_secret)})
        if data["kind"] == "segment":  # compared, never used to sign: a hash is enough (and looked up by it)
            write_key = "wk_" + secrets.token_urlsafe(24)
            source = super().create({**data, "write_key_hash": hash_write_key(write_key)})
            source.write_key = write_key  # transient: exists only in this response
            return source
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        data["secret_encrypted"] = encrypt(state().secret_key, SECRET_PURPOSE, secret)
        source = super().create(data)
        source.secret = secret  # transient: exists only in this response, never stored in the clear
        return source

    def validate(self, session, obj, creating):
        require_member()
        self.refuse_duplicate(session, obj, "name", WebhookSource.unit_id == obj.unit_id, WebhookSource.name == obj.name)

    def delete(self, obj_id):
        require_member()
        super().delete(obj_id)


register_crud(blp, SourceCrud(), WebhookSourceSchema, "/webhooks/sources", "/webhooks/sources/<obj_id>",
              update_schema=WebhookSourceUpdateSchema(partial=True), statuses={"post": (403,), "put": (403,), "delete": (403,)})


def hash_write_key(write_key: str) -> str:
    return hashlib.sha256(write_key.encode()).hexdigest()


def _reject(status: int, reason: str, message: str, details: dict | None = None, source: str = "standard") -> ApiError:
    metrics.WEBHOOKS_REJECTED.labels(source=source, reason=reason).inc()
    return ApiError(status, reason, message, details)


@blp.route("/webhooks/events/<source_id>", methods=["POST"], statuses=(202, 400, 401, 413, 503))
@public
def receive(source_id: str):
    """Verify the signature over the raw body (5-minute tolerance both ways), then ingest with webhook-id as the key."""
    source = db().execute(select(WebhookSource).where(WebhookSource.id == source_id, WebhookSource.kind == "standard")).scalar() \
        if plausible_id(source_id, 36) else None
    if source is None:
        raise _reject(404, "unknown_source", "no webhook source has this id")
    secret = decrypt(state().secret_key, SECRET_PURPOSE, source.secret_encrypted)
    body = request.get_data(cache=True)
    headers = {k: request.headers.get(k, "") for k in ("webhook-id", "webhook-timestamp", "webhook-signature")}
    missing = [k for k, v in headers.items() if not v]
    if missing:
        raise _reject(400, "missing_signature_headers", f"missing {', '.join(missing)}", {k: ["required"] for k in missing})
    if secret is None:  # SECRET_KEY changed since the source was created
        raise _reject(401, "bad_signature", "this source's secret can no longer be read; create the source again")
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except WebhookVerificationError as exc:
        reason = "stale_timestamp" if "timestamp too" in str(exc) else "bad_signature"
        raise _reject(401, reason, f"signature refused: {exc}", {"webhook-timestamp" if reason == "stale_timestamp" else "webhook-signature": [str(exc)]})
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:  # malformed header or body the library trips on
        raise _reject(401, "bad_signature", "signature refused: malformed signature header or body",
                      {"webhook-signature": [exc.__class__.__name__]})
    try:
        incoming = parse_event(strict_json_loads(body), state().settings.max_metadata_bytes, headers["webhook-id"], "webhook-id")
    except json.JSONDecodeError as exc:
        raise _reject(400, "malformed_json", f"body is not valid JSON: {exc.msg}")
    except (ValidationError, ApiError) as exc:
        error = rejection(exc)
        raise _reject(getattr(exc, "status", 400), error["code"], error["message"], error["details"])
    return ingested_payload(incoming, store([incoming], source.org_id, source.unit_id)[0]), 202


SEGMENT_CALLS = ("batch", "track", "identify", "page")


@blp.route("/webhooks/segment", methods=["POST"], defaults={"call": None}, statuses=(400, 401, 413, 415, 503))
@blp.route(f"/webhooks/segment/v1/<any({', '.join(SEGMENT_CALLS)}):call>", methods=["POST"], statuses=(400, 401, 413, 415, 503))
@public
def segment(call: str | None):
    """Segment's HTTP API, also at its /v1/<call> paths so its libraries need only host; key as Basic user or writeKey."""
    auth = request.authorization
    basic_key = auth.username if auth is not None and auth.type == "basic" and auth.username else None
    source = segment_source(basic_key) if basic_key else None  # a wrong Basic key is refused before the body is read
    try:
        payload = strict_json_loads(decoded_body())
    except ApiError as exc:
        raise _reject(exc.status, exc.code, exc.message, exc.details, source="segment")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _reject(400, "malformed_json", f"body is not valid JSON: {exc}", source="segment")
    if not isinstance(payload, dict):
        raise _reject(400, "validation_error", "the body must be a JSON object", source="segment")
    source = source_of_body_key(payload.get("writeKey"), basic_key, source)
    messages = segment_messages(payload, call)
    results, incoming, positions, identities = [], [], [], []
    refused: ApiError | ValidationError | None = None
    for i, msg in enumerate(messages):
        try:
            if not isinstance(msg, dict):
                raise ValidationError({"_schema": ["each message must be a JSON object"]})
            if msg.get("type") == "identify":
                identities.append((i, *identity(msg)))
                results.append({"index": i, "status": "identified"})
                continue
            incoming.append(parse_event(segment_map.event_body(msg), state().settings.max_metadata_bytes))
            positions.append(i)
            results.append({"index": i, "status": "accepted"})
        except segment_map.Unsupported as exc:
            results.append({"index": i, "status": "ignored", "reason": str(exc)})
        except (ValidationError, ApiError) as exc:
            refused, error = exc, rejection(exc)
            metrics.WEBHOOKS_REJECTED.labels(source="segment", reason=error["code"]).inc()
            results.append({"index": i, "status": "rejected", "error": error})
    if identities:
        refused = apply_identities(source, identities, results) or refused
    if incoming:
        store_items(Items(results, incoming, positions), source.org_id, source.unit_id)
    if len(messages) == 1 and results[0]["status"] == "rejected":  # a lone message answers as POST /ingest would
        error = results[0]["error"]
        raise ApiError(getattr(refused, "status", 400), error["code"], error["message"], error["details"])
    return jsonify({"success": True, "results": results})


def segment_source(write_key: str) -> WebhookSource:
    """The Segment source of a write key, found by its hash (no stored key to compare), else a 401."""
    source = db().execute(select(WebhookSource).where(WebhookSource.kind == "segment",
                                                      WebhookSource.write_key_hash == hash_write_key(write_key))).scalar()
    if source is None:
        raise _reject(401, "unknown_source", "no Segment source has this write key", source="segment")
    return source


def source_of_body_key(body_key, basic_key: str | None, source: WebhookSource | None) -> WebhookSource:
    """writeKey in the body, as Segment's API takes it: alone it names the source; beside a Basic user it must be the same key."""
    if body_key is None or body_key == "":
        if source is None:
            raise _reject(401, "missing_write_key", "send the source's write key as the Basic auth user or as writeKey in the body",
                          source="segment")
        return source
    if not isinstance(body_key, str):
        raise _reject(400, "validation_error", "writeKey must be a string", {"writeKey": ["must be a string"]}, source="segment")
    if not body_key.isascii():  # write keys are ASCII: this one is wrong (and a lone surrogate could not be hashed)
        raise _reject(401, "unknown_source", "no Segment source has this write key", {"writeKey": ["unknown"]}, source="segment")
    if basic_key is None:
        return segment_source(body_key)
    if not hmac.compare_digest(body_key.encode(), basic_key.encode()):
        raise _reject(401, "unknown_source", "the writeKey in the body is not the Basic user's write key", {"writeKey": ["does not match"]},
                      source="segment")
    return source


def segment_messages(payload: dict, call: str | None) -> list:
    """The messages of a body: a batch, or one message whose type a single-call path (/v1/track) implies."""
    if call == "batch" or (call is None and "batch" in payload):
        messages = payload.get("batch")
    elif call is None:
        messages = [payload]
    elif payload.get("type", call) != call:
        raise _reject(400, "validation_error", f"a /v1/{call} body is a {call} message", {"type": [f"must be {call} or absent"]},
                      source="segment")
    else:
        messages = [{**payload, "type": call}]
    if not isinstance(messages, list) or not 1 <= len(messages) <= BATCH_MAX:
        raise _reject(400, "validation_error", f"batch must hold 1 to {BATCH_MAX} messages", {"batch": ["1 to 500 messages"]},
                      source="segment")
    return messages


def identity(msg: dict) -> tuple[list, dict]:
    """An identify message's aliases (userId, anonymousId, traits.email) and traits, checked before anything is stored."""
    body = {"aliases": segment_map.aliases(msg), "event_type": "identify"}
    if msg.get("userId") is None and msg.get("anonymousId") is None and not body["aliases"]:
        raise ValidationError({"userId": ["userId, anonymousId or traits.email is required"]})
    data = parse_event(body, state().settings.max_metadata_bytes)
    traits = segment_map.traits_of(msg)
    problems = bad_text(traits)  # NUL and lone surrogates: PostgreSQL cannot store them
    if problems:
        raise ValidationError({f"traits.{path}": [problem] for path, problem in problems.items()})
    return data.aliases, traits


def apply_identities(source: WebhookSource, identities: list[tuple[int, list, dict]], results: list[dict]) -> ApiError | None:
    """traits become lead metadata (null removes a key), all messages in one transaction, in order, as if one at a time;
    a message that would grow its lead past the metadata limit is rejected alone. Returns the last such refusal."""
    close_db()
    refused = None
    with state().WriterSession() as s, s.begin():
        leads = resolve_leads(s, source.org_id, source.unit_id,
                              [IncomingEvent(event_type="identify", occurred_at=utcnow(), aliases=aliases) for _, aliases, _ in identities])
        rows = {lead.pk: lead for lead in s.execute(  # locked in one order: concurrent batches never deadlock
            select(Lead).where(Lead.pk.in_({pk for pk, _ in leads})).order_by(Lead.pk).with_for_update()).scalars()}
        for (i, _, traits), (pk, lead_id) in zip(identities, leads):
            try:
                set_metadata(rows[pk], merged_metadata(rows[pk].metadata_, traits), "traits")
                results[i]["lead_id"] = lead_id
            except ApiError as exc:
                refused, error = exc, rejection(exc)
                metrics.WEBHOOKS_REJECTED.labels(source="segment", reason=error["code"]).inc()
                results[i] = {"index": i, "status": "rejected", "error": error}
    return refused


@blp.route("/webhooks/hubspot", methods=["POST"], statuses=(400, 401, 404, 413, 503))
@public
def hubspot():
    """HubSpot app webhooks (signature v3, 5-minute window): contact.creation links or creates the lead by email and
    stores the contact id; contact.propertyChange updates lead metadata, never for LeadPulse's own properties."""
    source_id = request.args.get("source", "")
    source = db().execute(select(WebhookSource).where(WebhookSource.id == source_id, WebhookSource.kind == "hubspot")).scalar() \
        if plausible_id(source_id, 36) else None
    if source is None:
        raise _reject(404, "unknown_source", "no HubSpot webhook source has this id (?source=...)", source="hubspot")
    secret = decrypt(state().secret_key, SECRET_PURPOSE, source.secret_encrypted)
    body = request.get_data(cache=True)
    try:
        if secret is None:
            raise hs_hooks.SignatureError("bad_signature", "this source's secret can no longer be read; create it again")
        hs_hooks.verify_v3(secret, request.method, signed_request_url(), body, request.headers.get("X-HubSpot-Request-Timestamp", ""),
                           request.headers.get("X-HubSpot-Signature-v3", ""), int(time.time() * 1000))
    except hs_hooks.SignatureError as exc:
        status = 400 if exc.reason == "missing_signature_headers" else 401
        raise _reject(status, exc.reason, str(exc), source="hubspot")
    try:
        events = strict_json_loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _reject(400, "malformed_json", f"body is not valid JSON: {exc}", source="hubspot")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events) or len(events) > 1000:
        raise _reject(400, "validation_error", "expected a JSON array of HubSpot events", source="hubspot")
    problems = bad_text(events)  # NUL and lone surrogates: PostgreSQL cannot store them
    if problems:
        raise _reject(400, "validation_error", "unstorable text in the events", {p: [m] for p, m in problems.items()}, source="hubspot")
    try:
        counts = apply_hubspot_events(source, events)
    except HubSpotError as exc:  # could not read the new contacts' emails: a 5xx makes HubSpot deliver again
        raise ApiError(503, "hubspot_unavailable", f"HubSpot failed ({exc.status}): {exc.message}", headers={"Retry-After": "10"})
    return jsonify(counts)


def apply_hubspot_events(source: WebhookSource, events: list[dict]) -> dict:
    """Each eventId once (HubSpot retries deliveries); unknown subscription types are ignored, not refused; contact
    creations no token can read yet are kept (pending) and linked by the OU's next HubSpot sync once one can."""
    counts = {"applied": 0, "pending": 0, "duplicate": 0, "ignored": 0}
    conn = db().get(HubSpotConnection, source.unit_id)
    if conn is not None and conn.portal_id:  # another portal's events (an app installed in several) are not this OU's
        foreign = [e for e in events if str(e.get("portalId", conn.portal_id)) != str(conn.portal_id)]
        counts["ignored"] += len(foreign)
        events = [e for e in events if e not in foreign]
    created = list(dict.fromkeys(str(e.get("objectId")) for e in events if e.get("subscriptionType") == "contact.creation"
                                 and re.fullmatch(r"[0-9]{1,20}", str(e.get("objectId")))))
    emails: dict[str, str] = {}
    conn_token = token_for(conn, state().settings, state().secret_key) if created else None
    close_db()
    waiting = bool(created) and conn_token is None  # no token (or an unreadable one): nothing to read the emails with
    if conn_token is not None:
        try:
            emails = HubSpotAdapter(conn_token, state().settings.hubspot_api_base).emails_by_id(created)
        except HubSpotAuthError as exc:  # the token was revoked: a working one (PUT /integrations/hubspot) links them
            log.warning("HubSpot refused the token reading new contacts (%s); their creations wait for a working one", exc.status)
            waiting = True
        except HubSpotError as exc:
            if exc.transient:
                raise  # a 503 back: HubSpot delivers again
            log.warning("HubSpot refused reading new contacts (%s); their creations are ignored", exc.status)
    keyed: dict[str, dict] = {}
    for event in events:
        key = event.get("eventId")
        key = str(key)[:40] if isinstance(key, (int, str)) and not isinstance(key, bool) else ""
        if not key:  # nothing to dedupe redeliveries by
            counts["ignored"] += 1
        elif key in keyed:
            counts["duplicate"] += 1
        else:
            keyed[key] = event
    if not keyed:
        return counts
    with state().WriterSession() as s, s.begin():
        now = utcnow()
        fresh = set(s.execute(insert_for(s, HubSpotWebhookEvent).on_conflict_do_nothing(index_elements=["unit_id", "event_id"])
                              .returning(HubSpotWebhookEvent.event_id),
                              [dict(unit_id=source.unit_id, event_id=k, received_at=now) for k in sorted(keyed)]).scalars())
        counts["duplicate"] += len(keyed) - len(fresh)
        todo = [e for k, e in keyed.items() if k in fresh]  # delivery order
        creations = [e for e in todo if e.get("subscriptionType") == "contact.creation"]
        if waiting:
            counts["pending"] = _keep_creations(s, source, [e for e in creations if str(e.get("objectId")) in created])
            applied = 0
        else:
            linked = [(cid, emails.get(cid)) for cid in (str(e.get("objectId") or "") for e in creations)]
            # no email (or one HubSpot no longer has): nothing to link
            applied = link_contacts(s, source.org_id, source.unit_id, [(cid, email) for cid, email in linked if cid and email])
        applied += _apply_changes(s, source, [e for e in todo if e.get("subscriptionType") == "contact.propertyChange"])
    counts["applied"] += applied
    counts["ignored"] += len(todo) - applied - counts["pending"]
    return counts


def _keep_creations(s, source: WebhookSource, events: list[dict]) -> int:
    """Store the new contacts' ids until a token can read their emails (a contact announced twice is kept once)."""
    rows = {str(e["objectId"]): dict(unit_id=source.unit_id, hubspot_id=str(e["objectId"]), received_at=utcnow(),
                                     portal_id=str(e["portalId"])[:20] if isinstance(e.get("portalId"), (int, str)) else None)
            for e in events}
    if rows:
        s.execute(insert_for(s, HubSpotPendingCreation).on_conflict_do_nothing(index_elements=["unit_id", "hubspot_id"]),
                  [rows[k] for k in sorted(rows)])
    return len(events)


def _apply_changes(s, source: WebhookSource, events: list[dict]) -> int:
    """hubspot_* lead metadata from property changes, in delivery order; never LeadPulse's own properties (no echo)."""
    wanted = [(str(e.get("objectId") or ""), e) for e in events
              if isinstance(e.get("propertyName"), str) and e["propertyName"] not in hs_hooks.OWN_PROPERTIES]
    ids = {cid for cid, _ in wanted if cid}
    if not ids:
        return 0
    leads = {cid: lead for cid, lead in s.execute(  # locked in one order: concurrent deliveries never deadlock
        select(HubSpotContact.hubspot_id, Lead).join(HubSpotContact, HubSpotContact.lead_pk == Lead.pk)
        .where(HubSpotContact.unit_id == source.unit_id, HubSpotContact.hubspot_id.in_(ids))
        .order_by(Lead.pk).with_for_update(of=Lead))}
    applied = 0
    for cid, event in wanted:
        lead = leads.get(cid)
        if lead is None:
            continue
        name = event["propertyName"]
        try:
            set_metadata(lead, {**(lead.metadata_ or {}), hs_hooks.metadata_key(name): event.get("propertyValue")}, "propertyValue")
        except ApiError:
            log.warning("HubSpot change of %r on contact %s ignored: the lead's metadata would exceed the limit", name, cid)
            continue
        applied += 1
    return applied
