"""Delivering the alert outbox to Slack: each row posted once, in order, rescheduled (never slept) on limits."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from integrations.slack import SlackAdapter, SlackError
from integrations.slack_store import resolve
from integrations.timeouts import timed_out
from models.alerts import EXAMINE_LIMIT, alert_config, examine_changes, summarize_stale
from models.base import utcnow
from models.event_queries import recent_events
from models.explain import WHY_DAYS, why
from models.hubspot import HubSpotConnection, HubSpotContact
from models.lead_identity import primary_email
from models.leads import Lead
from models.levels import EngagementLevel
from models.slack import FAILED, PENDING, POSTING, SENT, UNSENT, SlackAlert, SlackConnection

log = logging.getLogger("leadpulse.slack")

MAX_ATTEMPTS = 5
MAX_RUN_SECONDS = 60
BACKOFF = (5, 15, 60, 300, 900)
# Errors that say the target or the install is wrong: every alert would fail alike, so they wait for a fix.
CONFIG_ERRORS = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "invalid_auth",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "not_authed",
    "missing_scope",
    "user_not_found",
    "cannot_dm_user",
    "restricted_action",
    "team_access_not_granted",
    "no_permission",
    "ekm_access_denied",
    "not_allowed_token_type",
}
NOT_CONFIGURED = "not configured"
CONFIG_RETRY_SECONDS = 900


@dataclass
class DeliveryOutcome:
    sent: int = 0
    retry_in: float | None = None
    stopped: str | None = None  # why delivery stopped with alerts still pending
    latencies: tuple = ()


def escape(text: str) -> str:
    """Slack mrkdwn control characters: lead data must never ping a channel or disguise a link."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _who(lead: Lead, email: str | None) -> str:
    meta = lead.metadata_ or {}
    name = meta.get("name") or " ".join(str(meta[k]) for k in ("first_name", "last_name") if meta.get(k)) or None
    if name and email:
        return escape(f"{name} ({email})")
    return escape(name or email or lead.lead_id)


def _hubspot_link(session, lead: Lead) -> str | None:
    contact = session.get(HubSpotContact, lead.pk)
    conn = session.get(HubSpotConnection, lead.unit_id)
    if contact is None or not contact.hubspot_id or conn is None or not conn.portal_id:
        return None
    return f"https://app.hubspot.com/contacts/{conn.portal_id}/record/0-1/{contact.hubspot_id}"


def lead_message(session, alert: SlackAlert) -> dict:
    """Block Kit with fallback text: who, score, level with its color, why, the last events, HubSpot link."""
    lead = session.get(Lead, alert.lead_pk) if alert.lead_pk is not None else None
    if lead is None:
        raise LookupError(f"alert {alert.id} announces a lead that is not there")
    email = session.execute(select(primary_email()).where(Lead.pk == lead.pk)).scalar()
    level = session.get(EngagementLevel, alert.level_id) if alert.level_id else None
    level_name, color = (escape(level.name), level.color) if level else ("a new level", "#64748b")
    who = _who(lead, email)
    reason = escape(
        why(session, lead.unit_id, [lead.pk]).get(lead.pk) or f"no scored events in the last {WHY_DAYS} days"
    )
    recent = recent_events(session, lead.pk)
    text = f"{who} entered {level_name} with a score of {alert.score}"
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Lead entered {level_name}"[:150]}},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*{who}*"},
            "fields": [
                {"type": "mrkdwn", "text": f"*Score*\n{alert.score}"},
                {"type": "mrkdwn", "text": f"*Level*\n{level_name}"},
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Why*\n{reason}"}},
    ]
    if recent:
        lines = "\n".join(
            f"• {escape(event_type)} <!date^{int(at.timestamp())}^{{date_short_pretty}} {{time}}|{at:%Y-%m-%d %H:%M} UTC>"
            for event_type, at in recent
        )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Last events*\n{lines}"}})
    link = _hubspot_link(session, lead)
    if link:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Open in HubSpot"}, "url": link}
                ],
            }
        )
    blocks.append(
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"lead_id `{escape(lead.lead_id)}` · LeadPulse"}]}
    )
    attachments = [{"color": color, "fallback": text, "text": f"{level_name} · score {alert.score}"}]
    return {"text": text, "blocks": blocks, "attachments": attachments}


def digest_message(session, alert: SlackAlert) -> dict:
    p = alert.payload or {}
    level = escape(p.get("level") or "the alert level")
    count = p.get("count", 0)
    leads = "lead" if count == 1 else "leads"
    if p.get("reason") == "catch_up":
        text = f"{count} {leads} entered {level} while Slack alerts could not be delivered (since {p.get('since', '')[:16]} UTC)"
    else:
        text = f"{count} {leads} entered {level} after the level change"
    sample = ", ".join(f"`{escape(lead_id)}`" for lead_id in p.get("leads", []))
    more = f" and {count - len(p.get('leads', []))} more" if count > len(p.get("leads", [])) else ""
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{text}*"}}]
    if sample:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"{sample}{more}"}]})
    return {"text": text, "blocks": blocks}


def message_for(session, alert: SlackAlert) -> dict:
    return lead_message(session, alert) if alert.kind == "lead" else digest_message(session, alert)


def _note_connection(session, unit_id: str, error: str | None, sent: bool = False) -> None:
    """The status shows the last error; an env-served OU gets a row just for that."""
    conn = session.get(SlackConnection, unit_id)
    if conn is None:
        if error is None and not sent:
            return
        conn = SlackConnection(unit_id=unit_id)
        session.add(conn)
    conn.last_error = error[:500] if error else None
    if sent:
        conn.last_sent_at = utcnow()


def examine_all(Session, unit_id: str) -> None:
    """Every unexamined change, in rounds of one transaction each, before anything is posted."""
    while True:
        with Session() as s, s.begin():
            if examine_changes(s, unit_id) < EXAMINE_LIMIT:
                return


def deliver_alerts(Session, settings, secret_key: str, unit_id: str, still_held=lambda: True) -> DeliveryOutcome:
    """Examine new level changes, then post unsent alerts oldest first until none is left or Slack says wait.

    Exactly once, even when a job dies between Slack accepting a post and our commit, and whatever Redis loses: each
    post is preceded by its own committed "posting" mark (with the attempt's time), and an alert found posting is
    first looked up in the channel's history by the key its message carries as metadata, and marked sent if it is
    there. The row stays locked while it is looked up and posted, so no other job settles it meanwhile.
    still_held: False once this job's lease on the OU is gone (another job may deliver now): hand over.
    """
    examine_all(Session, unit_id)
    with Session() as s:
        target = resolve(s, unit_id, s.get(SlackConnection, unit_id), settings, secret_key)
        cfg = alert_config(s, unit_id)
    if not target.ready:
        return DeliveryOutcome(stopped=NOT_CONFIGURED)
    with Session() as s, s.begin():
        summarize_stale(s, unit_id, cfg.cooldown_hours, cfg.level.name if cfg.level else None)
    adapter = SlackAdapter(target.token, settings.slack_api_base)
    out, channel, latencies = DeliveryOutcome(), None, []
    deadline = time.monotonic() + MAX_RUN_SECONDS
    while True:
        if time.monotonic() > deadline or not still_held():
            out.retry_in = 0.0  # hand over to a fresh job well inside its timeout
            break
        claim = _claim(Session, unit_id)
        if claim is None:
            break
        alert_id, attempt_at, earlier = claim  # earlier: a previous attempt may have reached Slack
        posted, posting = None, False
        try:
            with Session() as s, s.begin():
                alert = s.execute(
                    select(SlackAlert)
                    .where(SlackAlert.id == alert_id, SlackAlert.status == POSTING, SlackAlert.posting_at == attempt_at)
                    .with_for_update(skip_locked=True)
                ).scalar()
                if alert is None:
                    continue  # another job claimed it after us (only after a lease lapsed): it settles it
                message = message_for(s, alert)
                try:
                    channel = channel or adapter.channel_for(target.kind, target.target_id)
                    found = _look_for(adapter, channel, alert) if earlier else None
                    if found:
                        posted = {"channel": channel, "ts": found}
                    else:
                        earlier, posting = False, True  # not in the channel: post it
                        posted = adapter.post(channel, **message, key=alert.key)
                except SlackError as exc:
                    if out.sent:
                        _note_connection(s, unit_id, None, sent=True)
                    maybe_out = earlier or (posting and exc.may_have_landed)
                    return _failed(s, alert, exc, out, latencies, maybe_out=maybe_out)
                now = utcnow()
                alert.status, alert.sent_at, alert.channel, alert.ts = SENT, now, posted["channel"], posted["ts"]
                alert.text_, alert.last_error, alert.attempts = message["text"], None, alert.attempts + 1
                if alert.kind == "lead" and alert.event_received_at is not None:
                    latencies.append((now - alert.event_received_at).total_seconds())
                out.sent += 1
        except Exception as exc:  # a bug or a database error around one alert (SlackErrors return above)
            if timed_out(exc) or isinstance(exc, OperationalError):
                # The job's time is up, or the database went away (a restart, a failover): nothing is wrong with this
                # alert. The job ends; the row stays posting, and the next run (the sweep kicks one) looks it up in
                # the channel before anything is posted again.
                raise
            if posted is not None:  # Slack has it and we could not record that: the retry finds it in the channel
                log.exception("alert %s was posted but could not be marked sent; the retry looks it up first", alert_id)
                error = SlackError(error=f"internal error after posting ({exc.__class__.__name__})", status=500)
            else:
                log.exception("alert %s could not be prepared or posted; marked failed so later alerts go on", alert_id)
                error = SlackError(error=f"internal error ({exc.__class__.__name__})")
            with Session() as s, s.begin():
                alert = s.get(SlackAlert, alert_id, with_for_update=True)
                return _failed(s, alert, error, out, latencies, maybe_out=earlier or posting)
    if out.sent:
        with Session() as s, s.begin():
            _note_connection(s, unit_id, None, sent=True)
    out.latencies = tuple(latencies)
    return out


def _claim(Session, unit_id: str) -> tuple[int, datetime, bool] | None:
    """The oldest unsent alert, marked posting in a transaction of its own, committed before anything is sent:
    (id, the attempt's time, whether an earlier attempt may have reached Slack)."""
    with Session() as s, s.begin():
        alert = s.execute(
            select(SlackAlert)
            .where(SlackAlert.unit_id == unit_id, SlackAlert.status.in_(UNSENT))
            .order_by(SlackAlert.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).scalar()
        if alert is None:
            return None
        claim = (alert.id, utcnow(), alert.status == POSTING)
        alert.status, alert.posting_at = POSTING, claim[1]
    return claim


def _look_for(adapter: SlackAdapter, channel: str, alert: SlackAlert) -> str | None:
    """Without the history scope (an older install) we cannot tell: post again, at least once rather than never."""
    try:
        return adapter.find_posted(channel, alert.key, alert.created_at.timestamp() - 60)
    except SlackError as exc:
        if exc.transient:
            raise
        log.warning("cannot read channel history to check alert %s (%s); posting it again", alert.id, exc.error)
        return None


def _failed(
    s, alert: SlackAlert, exc: SlackError, out: DeliveryOutcome, latencies: list, maybe_out: bool
) -> DeliveryOutcome:
    """Record a failed attempt; maybe_out: it may have reached Slack, so the row stays posting (looked up first)."""
    out.latencies = tuple(latencies)
    alert.status = POSTING if maybe_out else PENDING
    if exc.rate_limited:
        out.retry_in = exc.retry_after or 1.0
        return out
    alert.attempts += 1
    alert.last_error = str(exc)[:500]
    if exc.error in CONFIG_ERRORS:
        _note_connection(s, alert.unit_id, f"Slack refused the alert target: {exc.error}")
        out.stopped = exc.error  # waits for a new target or install (which end the wait and kick delivery again),
        out.retry_in = CONFIG_RETRY_SECONDS  # or for a fix on Slack's side, such as inviting the bot back
        return out
    if not exc.transient or alert.attempts >= MAX_ATTEMPTS:
        alert.status = FAILED
        _note_connection(s, alert.unit_id, f"an alert failed after {alert.attempts} attempts: {exc.error}")
    # A refused message does not hold back the next one; Slack being down does.
    out.retry_in = BACKOFF[min(alert.attempts, len(BACKOFF)) - 1] if exc.transient else 0.0
    return out


def alert_counts(session, unit_id: str) -> dict:
    rows = dict(
        session.execute(
            select(SlackAlert.status, func.count()).where(SlackAlert.unit_id == unit_id).group_by(SlackAlert.status)
        ).all()
    )
    out = {status: rows.get(status, 0) for status in ("pending", "sent", "failed", "suppressed", "summarized")}
    out["pending"] += rows.get(POSTING, 0)  # not yet known to be sent
    last = (
        session.execute(
            select(SlackAlert.last_error)
            .where(SlackAlert.unit_id == unit_id, SlackAlert.status == FAILED)
            .order_by(SlackAlert.id.desc())
            .limit(1)
        ).scalar()
        if out["failed"]
        else None
    )
    return {**out, "last_failure": last}
