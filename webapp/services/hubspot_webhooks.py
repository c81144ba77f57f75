"""A HubSpot app webhook delivery: its source and v3 signature, then each eventId once, applied in one transaction."""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime

from sqlalchemy import select

from integrations import hubspot_webhooks as hs_hooks
from integrations.hubspot import HubSpotAdapter, HubSpotAuthError, HubSpotError
from integrations.hubspot_sync import token_for
from models.base import utcnow
from models.dialect import insert_for
from models.events import SUPPRESSED, Event
from models.hubspot import (
    LIFECYCLE_STAGE,
    PROPERTY_CHANGE,
    HubSpotConnection,
    HubSpotContact,
    HubSpotPendingCreation,
    HubSpotWebhookEvent,
)
from models.hubspot_sync_state import link_contacts
from models.leads import Lead
from models.webhooks import WebhookSource
from webapp.app_state import close_db, db, state
from webapp.blueprint import strict_json_loads
from webapp.errors import ApiError
from webapp.rate_limits import limit_source
from webapp.schema_base import bad_text
from webapp.services.event_input import FUTURE_ALLOWANCE
from webapp.services.leads import set_metadata
from webapp.services.webhooks import find_source, reject, source_secret

log = logging.getLogger("leadpulse.webhooks")


def hubspot_source(source_id: str) -> WebhookSource:
    source = find_source(source_id, "hubspot")
    if source is None:
        raise reject(404, "unknown_source", "no HubSpot webhook source has this id (?source=...)", source="hubspot")
    return source


def receive_hubspot(source: WebhookSource, method: str, url: str, body: bytes, timestamp: str, signature: str) -> dict:
    """Verify the v3 signature (5-minute window) over the request as HubSpot signed it, then apply the events; their counts."""
    secret = source_secret(source)
    try:
        if secret is None:
            raise hs_hooks.SignatureError(
                "bad_signature", "this source's secret can no longer be read; create it again"
            )
        hs_hooks.verify_v3(secret, method, url, body, timestamp, signature, int(time.time() * 1000))
    except hs_hooks.SignatureError as exc:
        status = 400 if exc.reason == "missing_signature_headers" else 401
        raise reject(status, exc.reason, str(exc), source="hubspot")
    limit_source(state(), source.id)  # only a delivery HubSpot signed counts against the source
    try:
        events = strict_json_loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise reject(400, "malformed_json", f"body is not valid JSON: {exc}", source="hubspot")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events) or len(events) > 1000:
        raise reject(400, "validation_error", "expected a JSON array of HubSpot events", source="hubspot")
    problems = bad_text(events)  # NUL and lone surrogates: PostgreSQL cannot store them
    if problems:
        raise reject(
            400,
            "validation_error",
            "unstorable text in the events",
            {p: [m] for p, m in problems.items()},
            source="hubspot",
        )
    try:
        return apply_hubspot_events(source, events)
    except HubSpotError as exc:  # could not read the new contacts' emails: a 5xx makes HubSpot deliver again
        raise ApiError(
            503, "hubspot_unavailable", f"HubSpot failed ({exc.status}): {exc.message}", headers={"Retry-After": "10"}
        )


def apply_hubspot_events(source: WebhookSource, events: list[dict]) -> dict:
    """Each eventId once (HubSpot retries deliveries); unknown subscription types are ignored, not refused; contact
    creations no token can read yet are kept (pending) and linked by the OU's next HubSpot sync once one can."""
    counts = {"applied": 0, "pending": 0, "duplicate": 0, "ignored": 0}
    conn = db().get(HubSpotConnection, source.unit_id)
    if conn is not None and conn.portal_id:  # another portal's events (an app installed in several) are not this OU's
        foreign = [e for e in events if str(e.get("portalId", conn.portal_id)) != str(conn.portal_id)]
        counts["ignored"] += len(foreign)
        events = [e for e in events if e not in foreign]
    created = list(
        dict.fromkeys(
            str(e.get("objectId"))
            for e in events
            if e.get("subscriptionType") == "contact.creation" and re.fullmatch(r"[0-9]{1,20}", str(e.get("objectId")))
        )
    )
    emails: dict[str, str] = {}
    conn_token = token_for(db(), source.unit_id, conn, state().settings, state().secret_key) if created else None
    close_db()
    waiting = bool(created) and conn_token is None  # no token (or an unreadable one): nothing to read the emails with
    if conn_token is not None:
        try:
            emails = HubSpotAdapter(conn_token, state().settings.hubspot_api_base).emails_by_id(created)
        except HubSpotAuthError as exc:  # the token was revoked: a working one (PUT /integrations/hubspot) links them
            log.warning(
                "HubSpot refused the token reading new contacts (%s); their creations wait for a working one",
                exc.status,
            )
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
        fresh = set(
            s.execute(
                insert_for(s, HubSpotWebhookEvent)
                .on_conflict_do_nothing(index_elements=["unit_id", "event_id"])
                .returning(HubSpotWebhookEvent.event_id),
                [dict(unit_id=source.unit_id, event_id=k, received_at=now) for k in sorted(keyed)],
            ).scalars()
        )
        counts["duplicate"] += len(keyed) - len(fresh)
        todo = [e for k, e in keyed.items() if k in fresh]  # delivery order
        creations = [e for e in todo if e.get("subscriptionType") == "contact.creation"]
        if waiting:
            counts["pending"] = _keep_creations(s, source, [e for e in creations if str(e.get("objectId")) in created])
            applied = 0
        else:
            linked = [(cid, emails.get(cid)) for cid in (str(e.get("objectId") or "") for e in creations)]
            # no email (or one HubSpot no longer has): nothing to link
            applied = link_contacts(
                s, source.org_id, source.unit_id, [(cid, email) for cid, email in linked if cid and email]
            )
        applied += _apply_changes(s, source, [e for e in todo if e.get("subscriptionType") == "contact.propertyChange"])
    counts["applied"] += applied
    counts["ignored"] += len(todo) - applied - counts["pending"]
    return counts


def _keep_creations(s, source: WebhookSource, events: list[dict]) -> int:
    """Store the new contacts' ids until a token can read their emails (a contact announced twice is kept once)."""
    rows = {
        str(e["objectId"]): dict(
            unit_id=source.unit_id,
            hubspot_id=str(e["objectId"]),
            received_at=utcnow(),
            portal_id=str(e["portalId"])[:20] if isinstance(e.get("portalId"), (int, str)) else None,
        )
        for e in events
    }
    if rows:
        s.execute(
            insert_for(s, HubSpotPendingCreation).on_conflict_do_nothing(index_elements=["unit_id", "hubspot_id"]),
            [rows[k] for k in sorted(rows)],
        )
    return len(events)


def _apply_changes(s, source: WebhookSource, events: list[dict]) -> int:
    """hubspot_* lead metadata from property changes, in delivery order; never LeadPulse's own properties (no echo)."""
    wanted = [
        (str(e.get("objectId") or ""), e)
        for e in events
        if isinstance(e.get("propertyName"), str) and e["propertyName"] not in hs_hooks.OWN_PROPERTIES
    ]
    ids = {cid for cid, _ in wanted if cid}
    if not ids:
        return 0
    leads = {
        cid: lead
        for cid, lead in s.execute(  # locked in one order: concurrent deliveries never deadlock
            select(HubSpotContact.hubspot_id, Lead)
            .join(HubSpotContact, HubSpotContact.lead_pk == Lead.pk)
            .where(HubSpotContact.unit_id == source.unit_id, HubSpotContact.hubspot_id.in_(ids))
            .order_by(Lead.pk)
            .with_for_update(of=Lead)
        )
    }
    applied = 0
    for cid, event in wanted:
        lead = leads.get(cid)
        if lead is None:
            continue
        name = event["propertyName"]
        try:
            set_metadata(
                lead,
                {**(lead.metadata_ or {}), hs_hooks.metadata_key(name): event.get("propertyValue")},
                "propertyValue",
            )
        except ApiError:
            log.warning(
                "HubSpot change of %r on contact %s ignored: the lead's metadata would exceed the limit", name, cid
            )
            continue
        applied += 1
        if name == LIFECYCLE_STAGE:
            s.add(_lifecycle_event(source, lead, event))
    return applied


def _lifecycle_event(source: WebhookSource, lead: Lead, event: dict) -> Event:
    """A lifecycle stage change kept as an event at HubSpot's time, for backtests' outcomes (docs/previews.md): stored
    suppressed, so it never scores and no rule can make it, and it is not the lead's activity."""
    now = utcnow()
    at = event.get("occurredAt")
    occurred = now
    if isinstance(at, int) and not isinstance(at, bool) and 0 <= at <= (now + FUTURE_ALLOWANCE).timestamp() * 1000:
        occurred = datetime.fromtimestamp(at / 1000, UTC)
    value = event.get("propertyValue")
    return Event(
        org_id=source.org_id,
        unit_id=source.unit_id,
        lead_pk=lead.pk,
        event_type=PROPERTY_CHANGE,
        occurred_at=occurred,
        received_at=now,
        metadata_={
            "channel": "crm",
            "source": "hubspot",
            "propertyName": LIFECYCLE_STAGE,
            "propertyValue": value if isinstance(value, str) or value is None else json.dumps(value),
            "objectId": str(event.get("objectId")),
            "eventId": str(event.get("eventId")),
        },
        status=SUPPRESSED,
        suppressed_reason="a HubSpot lifecycle stage change: kept for backtests, never scored",
        quiet=True,
    )
