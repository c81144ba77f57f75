"""How a lead, its level and an event are shown, and how a lead is found: shared by every resource that shows them,
so no blueprint imports another."""

from __future__ import annotations

import json

from marshmallow import fields, validate

from models.decay_forecast import Forecast, forecast_for_lead
from models.events import PENDING, SCORED, STATUS_NAMES
from models.leads import Lead
from models.levels import EngagementLevel
from webapp.app_state import db
from webapp.crud import scoped
from webapp.errors import not_found
from webapp.schema_base import StrictSchema, UTCDateTime, rfc3339

SCORE_BOUND = validate.Range(min=-(2**62), max=2**62)
STATUS = {PENDING: "pending", SCORED: "scored"}


class LeadSchema(StrictSchema):
    id = fields.String(attribute="lead_id")
    org_id = fields.String()
    unit_id = fields.String()
    account_id = fields.String(allow_none=True)
    owner_id = fields.String(allow_none=True)
    owner_name = fields.String(allow_none=True)
    created_at = UTCDateTime()
    updated_at = UTCDateTime()
    merged_into = fields.String(allow_none=True)
    metadata = fields.Dict(attribute="metadata_")
    score = fields.Integer()
    last_event_at = UTCDateTime(allow_none=True)


def get_lead(lead_id: str) -> Lead:
    """The caller's OU's lead by its id; another OU's is a 404 like a missing one."""
    lead = db().execute(scoped(Lead).where(Lead.lead_id == lead_id)).scalar()
    if lead is None:
        raise not_found("lead")
    return lead


class LevelRefSchema(StrictSchema):
    """A lead's level as every lead answer shows it (level_dump)."""

    id = fields.String()
    name = fields.String()
    color = fields.String()


class LeadMatchSchema(StrictSchema):
    """A lead as search finds it: the start of the shapes GET /score and lists show."""

    lead_id = fields.String()
    score = fields.Integer()
    level = fields.Nested(LevelRefSchema, allow_none=True)


class LeadScoresSchema(LeadMatchSchema):
    """A lead's scores by ruleset: what GET /score and the lists both show."""

    ruleset_id = fields.String(metadata={"description": "the ruleset the score is by; empty when the OU has none"})
    engagement_scores = fields.Dict(
        keys=fields.String(), values=fields.Integer(), metadata={"description": "ruleset id -> score"}
    )
    profile_scores = fields.Dict(metadata={"description": "always empty: no profile scoring"})


def level_dump(level_id, name, color) -> dict | None:
    return {"id": level_id, "name": name, "color": color} if level_id else None


class EventSchema(StrictSchema):
    """An event as event_dump shows it."""

    id = fields.String(metadata={"description": "LeadPulse's id of the stored event"})
    lead_id = fields.String()
    event_type = fields.String()
    timestamp = UTCDateTime()
    received_at = UTCDateTime()
    metadata = fields.Dict(metadata={"description": "as sent"})
    channel = fields.String(allow_none=True, metadata={"description": "metadata.channel as text; null when unset"})
    status = fields.String(validate=validate.OneOf(list(STATUS_NAMES.values())))
    suppressed_reason = fields.String(metadata={"description": "only for a suppressed event"})


def channel_text(metadata: dict | None) -> str | None:
    """metadata.channel as text, as the database reads it for GET /channels and the channel filters: a number or an
    object a client sent there is shown as its JSON, never handed on as another type."""
    value = (metadata or {}).get("channel")
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class DecayForecastSchema(StrictSchema):
    """What decay_forecast gives."""

    at = fields.String(metadata={"format": "date-time"})  # given as text already: dumped as is where a schema dumps it
    score = fields.Integer(metadata={"description": "the score decay leaves the lead with then"})
    level = fields.Nested(LevelRefSchema, allow_none=True, metadata={"description": "its level then"})


def lead_forecast(lead: Lead) -> tuple[Forecast, EngagementLevel | None] | None:
    """When decay takes the lead below its level unless it is active first, and the level it lands in; None if it
    never does (models/decay_forecast.py). The API's decay_forecast and the console's lead page both read this."""
    forecast = forecast_for_lead(db(), lead)
    if forecast is None:
        return None
    return forecast, db().get(EngagementLevel, forecast.level.id) if forecast.level else None


def decay_forecast(lead: Lead) -> dict | None:
    """{at, score, level} as the lead answers show lead_forecast."""
    found = lead_forecast(lead)
    if found is None:
        return None
    forecast, level = found
    return {
        "at": rfc3339(forecast.at),
        "score": forecast.score,
        "level": level_dump(level.id, level.name, level.color) if level else None,
    }


def event_dump(rows) -> list[dict]:
    return [
        {
            "id": str(r.id),
            "lead_id": r.lead_id,
            "event_type": r.event_type,
            "timestamp": rfc3339(r.occurred_at),
            "received_at": rfc3339(r.received_at),
            "metadata": r.metadata_ or {},
            "channel": channel_text(r.metadata_),
            "status": STATUS.get(r.status, "suppressed"),
            **({"suppressed_reason": r.suppressed_reason} if r.suppressed_reason else {}),
        }
        for r in rows
    ]


class WhoSchema(StrictSchema):
    kind = fields.String(
        allow_none=True,
        metadata={"description": "member, credential or system (null: not known, before history kept it)"},
    )
    id = fields.String(allow_none=True, metadata={"description": "the member's or API credential's id"})
    name = fields.String(
        allow_none=True, metadata={"description": "the member's email or the credential's name, as it was then"}
    )


class HistoryEntrySchema(StrictSchema):
    """What every history entry (levels, rulesets) says: what was done, by whom, when (docs/history.md)."""

    id = fields.String()
    action = fields.String()
    who = fields.Nested(WhoSchema)
    created_at = UTCDateTime()


def history_entry(entry, **details) -> dict:
    """A history entry's common fields (models/base.py ActorColumns for who), and what its kind adds."""
    who = {"kind": entry.actor_kind, "id": entry.actor, "name": entry.actor_name}
    return {"id": entry.id, "action": entry.action, "who": who, "created_at": entry.created_at, **details}
