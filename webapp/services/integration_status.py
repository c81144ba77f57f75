"""How an OU's HubSpot and Slack integrations are doing, as GET /integrations/hubspot and /integrations/slack answer
it and the console's Integrations page shows it: never a token, only where it comes from and how delivery goes."""

from __future__ import annotations

from sqlalchemy import func, select

from integrations.slack_alerts import alert_counts
from integrations.slack_store import resolve
from models.hubspot import HubSpotConnection, HubSpotContact, HubSpotPendingCreation
from models.hubspot_sync_state import pending_query, sync_counts
from models.integration_defaults import default_serves
from models.leads import Lead
from models.slack import SlackAlert, SlackApp, SlackConnection
from webapp.app_state import db, state
from webapp.auth import principal
from webapp.schema_base import rfc3339


def hubspot_source(unit_id: str, conn: HubSpotConnection | None) -> str | None:
    """Whose token syncs the OU: its own ("ou"), the server's default ("environment"), or none (not connected)."""
    settings = state().settings
    by_default = conn is None and settings.hubspot_access_token and default_serves(db(), settings, unit_id)
    return "ou" if conn else ("environment" if by_default else None)


def hubspot_status(unit_id: str) -> dict:
    """What the OU sees: never the token, only where it comes from and how syncing goes."""
    conn = db().get(HubSpotConnection, unit_id)
    source = hubspot_source(unit_id, conn)
    return {
        "connected": source is not None,
        "token_source": source,
        "portal_id": conn.portal_id if conn else None,
        "properties_ready": bool(conn and conn.properties_ready),
        "create_missing_contacts": bool(conn and conn.create_missing_contacts),
        "connected_at": rfc3339(conn.connected_at) if conn else None,
        "last_sync_at": rfc3339(conn.last_sync_at) if conn else None,
        "last_error": conn.last_error if conn else None,
        "level_options_current": bool(conn and conn.options_synced >= conn.options_wanted),
        **dict(zip(("pending", "failed"), sync_counts(db(), unit_id))),
        "pending_creations": db()
        .execute(
            select(func.count()).select_from(HubSpotPendingCreation).where(HubSpotPendingCreation.unit_id == unit_id)
        )
        .scalar(),
    }


def slack_status(unit_id: str, install_url: str) -> dict:
    """Where alerts go and how delivery is doing; "not configured" says alerts wait, nothing is lost. install_url:
    where a browser starts the OAuth install, offered when the organization has a Slack app."""
    conn = db().get(SlackConnection, unit_id)
    target = resolve(db(), unit_id, conn, state().settings, state().secret_key)
    counts = alert_counts(db(), unit_id)
    if not target.ready:
        delivery = "not configured"
    else:
        delivery = "error" if conn is not None and conn.last_error else "ok"
    can_install = db().get(SlackApp, principal().org_id) is not None
    return {
        "connected": target.token is not None,
        "token_source": target.token_source,
        "team_name": conn.team_name if conn else None,
        "team_id": conn.team_id if conn else None,
        "bot_user_id": conn.bot_user_id if conn else None,
        "updated_at": rfc3339(conn.updated_at) if conn else None,
        "default_target_kind": target.kind,
        "default_target_id": target.target_id,
        "authorize_url": install_url if can_install else None,
        "alerts": {
            "delivery": delivery,
            **counts,
            "last_error": conn.last_error if conn else None,
            "last_sent_at": rfc3339(conn.last_sent_at) if conn else None,
        },
    }


CONTACT_URL = "https://app.hubspot.com/contacts/{portal}/record/0-1/{contact}"  # 0-1: HubSpot's contact object
LEAD_ALERTS = 10  # the newest alerts a lead's page lists


def lead_hubspot(lead: Lead) -> dict:
    """One lead's HubSpot contact and where its sync stands, by the rules the sync itself follows (pending_query): a
    lead read by its primary key and its contact row, never the OU's counts."""
    conn = db().get(HubSpotConnection, lead.unit_id)
    contact = db().get(HubSpotContact, lead.pk)
    found = {
        "connected": hubspot_source(lead.unit_id, conn) is not None,
        "contact_id": contact.hubspot_id if contact else None,
        "url": None,
        "synced_at": contact.synced_at if contact else None,
        "synced_score": contact.synced_score if contact else None,
        "failure": contact.failure if contact else None,
        "failed_at": contact.failed_at if contact else None,
    }
    if found["contact_id"] and conn is not None and conn.portal_id:
        found["url"] = CONTACT_URL.format(portal=conn.portal_id, contact=found["contact_id"])
    waiting = db().execute(pending_query(lead.unit_id).where(Lead.pk == lead.pk).limit(1)).first() is not None
    if waiting:
        found["state"] = "waiting"
    elif contact is not None and contact.failure:
        found["state"] = "failed"  # refused for these very values: a later change of the lead retries it
    elif contact is not None and contact.synced_at is not None:
        found["state"] = "synced"
    else:
        found["state"] = "unmatched"  # neither an email nor a known contact id: no contact to write
    return found


def lead_alerts(lead: Lead, limit: int = LEAD_ALERTS) -> list[SlackAlert]:
    """The Slack alerts made for the lead's level entries, newest first (the (lead, time) index answers it)."""
    return list(
        db()
        .execute(
            select(SlackAlert)
            .where(SlackAlert.lead_pk == lead.pk, SlackAlert.unit_id == lead.unit_id, SlackAlert.kind == "lead")
            .order_by(SlackAlert.created_at.desc(), SlackAlert.id.desc())
            .limit(limit)
        )
        .scalars()
    )
