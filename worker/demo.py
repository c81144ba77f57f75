"""`leadpulse demo`: seed an OU, score it with the workers' own code, and show what reached (or would reach) HubSpot and Slack."""

from __future__ import annotations

import json

from redis import Redis
from sqlalchemy import select

from config import Settings
from integrations.hubspot_sync import sync_contacts, token_for
from integrations.slack_alerts import deliver_alerts, examine_all
from integrations.slack_store import resolve
from models.accounts import bootstrap_tenant, load_or_create_secret
from models.change_history import SYSTEM, Actor
from models.db import session_factory
from models.hubspot import HubSpotConnection
from models.hubspot_sync_state import pending_contacts
from models.leads import Lead
from models.levels import EngagementLevel
from models.score_batch import score_pending
from models.seed import SeedRefused, email_of, seed_unit
from models.slack import SlackAlert, SlackConnection
from models.tenancy import OrgUnit


def pick_unit(Session, settings: Settings, unit_id: str | None) -> tuple[str, str, dict | None]:
    """(org_id, unit_id, new credential or None): the given OU, the only one, or a new Demo/Main."""
    with Session() as s:
        if unit_id:
            unit = s.get(OrgUnit, unit_id)
            if unit is None:
                raise SystemExit(f"demo: no organization unit {unit_id}")
            return unit.org_id, unit.id, None
        units = s.execute(select(OrgUnit).limit(2)).scalars().all()
    if len(units) > 1:
        raise SystemExit("demo: several organization units exist; choose one with --unit-id")
    if units:
        return units[0].org_id, units[0].id, None
    created = bootstrap_tenant(settings.database_url, "Demo", "Main")
    return created["org_id"], created["unit_id"], created


def run_demo(settings: Settings, unit_id: str | None = None) -> str:
    Session = session_factory(settings.database_url, writer=True)
    org_id, unit_id, credential = pick_unit(Session, settings, unit_id)
    try:
        with Session() as s, s.begin():
            seeded = seed_unit(s, org_id, unit_id, actor=Actor(SYSTEM, name="leadpulse demo"))
    except SeedRefused as exc:
        raise SystemExit(f"demo: {exc}") from None
    while True:  # score here with the workers' code, so the table is final without a running worker
        with Session() as s, s.begin():
            if not score_pending(s, limit=settings.score_batch_size).events:
                break
    examine_all(Session, unit_id)
    secret = load_or_create_secret(Session)
    lines = []
    if credential:
        lines += ["Created organization 'Demo', unit 'Main'; API credential (shown once):", json.dumps(credential), ""]
    lines += [
        f"Seeded OU {unit_id}: levels created {seeded.levels_created or 'none (kept yours)'}, "
        f"ruleset {seeded.ruleset_id}, {seeded.events} new events",
        "",
    ]
    lines += _leads_table(Session, unit_id, seeded.leads, email_of)
    lines += [""] + _hubspot_lines(Session, settings, secret, unit_id)
    with Session() as s:
        ready = resolve(s, unit_id, s.get(SlackConnection, unit_id), settings, secret).ready
    sent = deliver_alerts(Session, settings, secret, unit_id) if ready else None
    with Session() as s:
        alerts = s.execute(
            select(SlackAlert, Lead.lead_id)
            .outerjoin(Lead, Lead.pk == SlackAlert.lead_pk)
            .where(SlackAlert.unit_id == unit_id)
            .order_by(SlackAlert.id)
        ).all()
    note = "" if ready else " (Slack is not configured: pending alerts wait, see GET /integrations/slack)"
    lines.append(f"Slack alerts{note}:" if alerts else "Slack: no lead entered the alert level")
    for a, lead_id in alerts:
        what = (
            f"digest: {a.payload.get('count')} leads"
            if a.kind == "digest"
            else f"{lead_id} entered the alert level, score {a.score}"
        )
        lines.append(f"  [{a.status}] {what}")
    if sent is not None and sent.stopped:
        lines.append(f"  delivery stopped: {sent.stopped}")
    return "\n".join(lines)


def _leads_table(Session, unit_id: str, lead_ids: list[str], email_of) -> list[str]:
    with Session() as s:
        rows = s.execute(
            select(Lead.lead_id, Lead.metadata_, Lead.score, EngagementLevel.name)
            .outerjoin(EngagementLevel, EngagementLevel.id == Lead.level_id)
            .where(Lead.unit_id == unit_id, Lead.lead_id.in_(lead_ids))
            .order_by(Lead.score.desc())
        ).all()
    out = [f"{'lead':<16} {'name':<20} {'email':<24} {'score':>5}  level", "-" * 76]
    for lead_id, meta, score, level in rows:
        out.append(
            f"{lead_id:<16} {(meta or {}).get('name', ''):<20} {email_of(lead_id):<24} {score:>5}  {level or 'Unclassified'}"
        )
    return out


def _hubspot_lines(Session, settings, secret: str, unit_id: str) -> list[str]:
    with Session() as s:
        conn = s.get(HubSpotConnection, unit_id)
        pending = pending_contacts(s, unit_id, 100)
        token = token_for(s, unit_id, conn, settings, secret)
    if token is None:
        out = [f"HubSpot: not configured; {len(pending)} contacts would get engagement_score/engagement_level:"]
        return out + [f"  {r.email}: {r.score}" for r in pending]
    result = sync_contacts(Session, settings, secret, Redis.from_url(settings.redis_url), unit_id)
    return [
        f"HubSpot: {result.sent} contacts written, {result.failed} reported in GET /integrations/hubspot/failures"
        + (f"; retrying in {result.retry_in:.0f} s by the worker" if result.retry_in else "")
        + (f"; stopped: {result.stopped}" if result.stopped else "")
    ]
