"""The Leads page (the filtered table, keyset-paged, under the levels bar, updated live from /stream) and a lead's
page. The filters are GET /leads' own (models/lead_ops.py list_statement); a lead is found as the API finds it."""

from __future__ import annotations

from flask import request, url_for
from marshmallow import EXCLUDE, ValidationError, fields, validate, validates_schema

from models import keyset, lead_ops
from models.base import utcnow
from models.explain import WHY_DAYS, explain_lead
from models.lead_identity import aliases_of, primary_emails
from models.levels import EngagementLevel
from models.score_history import HISTORY_DAYS, lead_history, primary_ruleset, window_start
from webapp.app_state import db
from webapp.auth import current_unit
from webapp.console.base import FormErrors, form_values, load, page, render
from webapp.console.charts import score_chart
from webapp.crud import scoped
from webapp.representations import SCORE_BOUND, get_lead, lead_forecast
from webapp.schema_base import StrictSchema
from webapp.services.integration_status import lead_alerts, lead_hubspot
from webapp.services.level_counts import recent_level_counts

PAGE_SIZE = 50
EVENTS_SHOWN = 50
SYNC_STATES = {
    "synced": "In sync: HubSpot has this score and level",
    "waiting": "Waiting: the next sync writes this score and level",
    "failed": "Refused by HubSpot: a later change of the lead tries again",
    "unmatched": "Not synced: no email or contact id to find the contact by",
}
HISTORY_ROWS = 20  # the latest changes listed under the chart
SORT_NAMES = {"-score": "score, highest first", "score": "score, lowest first"}
SORT_NAMES |= {"-last_event_at": "last activity, newest first", "last_event_at": "last activity, oldest first"}
LAST_ACTIVE = {"any": "Any time", "7d": "In the last 7 days", "30d": "In the last 30 days"}


class LeadFilters(StrictSchema):
    class Meta:
        unknown = EXCLUDE  # a shared link may carry what this page does not use

    q = fields.String(validate=validate.Length(min=1, max=200))
    level = fields.String(validate=validate.Length(min=1, max=100))
    min_score = fields.Integer(validate=SCORE_BOUND)
    max_score = fields.Integer(validate=SCORE_BOUND)
    last_active = fields.String(validate=validate.OneOf(list(LAST_ACTIVE)))
    sort = fields.String(validate=validate.OneOf(list(lead_ops.KEYSET_SORTS)), load_default="-score")
    after = fields.String(validate=validate.Length(max=2000))

    @validates_schema
    def score_range(self, data, **_):
        if data.get("min_score") is not None and data.get("max_score") is not None:
            if data["max_score"] < data["min_score"]:
                raise ValidationError("must not be below the lowest score", "max_score")


FILTERS = ("q", "level", "min_score", "max_score", "last_active", "sort", "after")


def leads_url(filters: dict, **changes) -> str:
    """The Leads page with these filters and changes, from its first page unless changes say after."""
    query = {k: v for k, v in filters.items() if v not in (None, "") and k != "after"}
    query.update({k: v for k, v in changes.items() if v is not None})
    if query.get("sort") == "-score":
        del query["sort"]  # the default
    return url_for("console.leads", **query)


def levels_of_unit():
    """The OU's levels by score range (the bar's order, low to high)."""
    return db().execute(scoped(EngagementLevel).order_by(EngagementLevel.min_score)).scalars().all()


def level_bar(levels) -> dict:
    """Each level's share of the OU's leads, in its color; the leads no level holds as Unclassified."""
    counts = recent_level_counts(current_unit(), levels)
    total = sum(counts.values())
    segments = [{"id": lv.id, "name": lv.name, "color": lv.color, "count": counts.get(lv.id, 0)} for lv in levels]
    if counts.get(None):
        segments.append({"id": "none", "name": "Unclassified", "color": "#cbd5e1", "count": counts[None]})
    x = 0.0
    for seg in segments:
        seg["share"] = seg["count"] / total if total else 0.0
        seg["x"], x = x, x + seg["share"]
    return {"total": total, "segments": segments}


@page("/leads")
def leads():
    """The OU's leads, hottest first by default; every filter of GET /leads that a person uses, plus a search."""
    raw = form_values(FILTERS, ints=("min_score", "max_score"), source=request.args)
    levels = levels_of_unit()
    rows, next_cursor, errors, status = [], None, None, 200
    try:
        filters = load(LeadFilters(), raw)
        keys = lead_ops.KEYSET_SORTS[filters["sort"]]
        session = db()
        try:
            stmt = lead_ops.list_statement(session, current_unit(), filters, utcnow())
            rows, next_cursor = keyset.page(session, stmt, keys, filters.get("after"), PAGE_SIZE)
        except lead_ops.UnknownLevel:
            raise FormErrors({"level": ["There is no such level in this organization unit."]})
        except keyset.BadCursor:
            raise FormErrors({"after": ["This page link is out of date: start again from the first page."]})
    except FormErrors as exc:
        errors, status, filters = exc, 400, {"sort": "-score", **raw}
    emails = primary_emails(db(), [r.pk for r in rows]) if rows else {}
    return render(
        "leads.html",
        status,
        rows=rows,
        emails=emails,
        levels=levels,
        bar=level_bar(levels),
        filters=filters,
        errors=errors,
        next_cursor=next_cursor,
        sort_names=SORT_NAMES,
        last_active=LAST_ACTIVE,
        leads_url=leads_url,
        active="leads",
    )


def score_history(found, levels):
    """The lead's primary score over HISTORY_DAYS as GET /lead/{id}/score-history reads it, drawn as a chart."""
    session = db()
    now = utcnow()
    start = window_start(now, HISTORY_DAYS)
    ruleset_id = primary_ruleset(session, found.unit_id)
    start_score, points = lead_history(session, found.pk, ruleset_id, start) if ruleset_id else (0, [])
    return {
        "chart": score_chart(start, now, start_score, points, levels),
        "changes": points[-HISTORY_ROWS:][::-1],
        "ruleset_id": ruleset_id,
    }


@page("/leads/<lead_id>")
def lead(lead_id):
    """One lead: score and level, why (explain_lead, as GET /lead/{id}/score-explain), its score history, the decay
    forecast, recent events with their points, aliases and metadata, its HubSpot contact and Slack alerts."""
    found = get_lead(lead_id)  # another OU's lead is a 404, as in the API
    session = db()
    level = lead_ops.level_of(session, found)
    levels = levels_of_unit()
    events = lead_ops.activity(
        session,
        found,
        None,
        None,
        end_inclusive=False,
        channel=None,
        has_delta=None,
        min_delta=None,
        limit=EVENTS_SHOWN,
    )
    return render(
        "lead.html",
        lead=found,
        level=level,
        email=primary_emails(session, [found.pk]).get(found.pk),
        aliases=aliases_of(session, found.pk),
        events=events,
        events_shown=EVENTS_SHOWN,
        why=explain_lead(session, found, WHY_DAYS * 24),
        why_days=WHY_DAYS,
        history=score_history(found, levels),
        levels_by_id={lv.id: lv for lv in levels},
        history_days=HISTORY_DAYS,
        forecast=lead_forecast(found),
        hubspot=lead_hubspot(found),
        alerts=lead_alerts(found),
        sync_states=SYNC_STATES,
        active="leads",
    )
