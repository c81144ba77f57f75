"""Reading events: lists with filters, a lead's events, what one did to the scores, a streamed CSV export, channels,
types and their keys."""

from __future__ import annotations

import csv
import io
import json
import re

from flask import Response, stream_with_context
from marshmallow import fields, validate
from sqlalchemy import and_, or_, select, text

from models.base import utcnow
from models.event_queries import EVENT_COLUMNS, NEWEST_FIRST
from models.events import Event
from models.explain import event_score
from models.leads import Lead
from models.replay import delete_events
from models.time_ranges import RANGES, range_start
from webapp.app_state import db, state
from webapp.auth import current_unit
from webapp.blueprint import Blueprint
from webapp.crud import page_doc, paginate
from webapp.errors import ApiError, not_found
from webapp.representations import EventSchema, event_dump, get_lead
from webapp.schema_base import PageArgs, StrictSchema, UTCDateTime
from worker.jobs import try_kick

blp = Blueprint("events", __name__, description="Reading events")
EXPORT_CHUNK = 1000
EVENTS = page_doc(EventSchema, "events")  # newest first
STRINGS = {"type": "array", "items": {"type": "string"}}
EVENT_ID = re.compile(r"[0-9]{1,18}")  # what an event id can be; anything else names no event


class EventFilterArgs(StrictSchema):
    metadata = fields.List(
        fields.String(validate=validate.Length(min=3, max=300)), metadata={"description": "key:value, repeatable"}
    )
    logic = fields.String(load_default="and", validate=validate.OneOf(["and", "or"]))
    event_type = fields.String(validate=validate.Length(min=1, max=100))
    lead_id = fields.String(validate=validate.Length(min=1, max=200))
    range = fields.String(validate=validate.OneOf(RANGES))


class EventListArgs(PageArgs, EventFilterArgs):
    pass


def filtered(args: dict):
    """The OU's events with the documented list filters; a bad metadata filter is a 400 naming it."""
    stmt = select(*EVENT_COLUMNS).join(Lead, Lead.pk == Event.lead_pk).where(Event.unit_id == current_unit())
    if "event_type" in args:
        stmt = stmt.where(Event.event_type == args["event_type"])
    if "lead_id" in args:
        stmt = stmt.where(Lead.lead_id == args["lead_id"])
    if "range" in args:
        start, end = range_start(args["range"], utcnow())
        stmt = stmt.where(*([Event.occurred_at >= start] if start else []), *([Event.occurred_at < end] if end else []))
    conditions = []
    for item in args.get("metadata", []):
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise ApiError(
                400,
                "validation_error",
                f"metadata filter '{item}' must look like key:value",
                {"metadata": ["key:value"]},
            )
        conditions.append(Event.metadata_[key].as_string() == value)
    if conditions:
        stmt = stmt.where(and_(*conditions) if args["logic"] == "and" else or_(*conditions))
    return stmt


@blp.route("/events", methods=["GET"])
@blp.arguments(EventListArgs, location="query")
@blp.alt_response(200, schema=EVENTS, success=True)
def list_events(args):
    return paginate(filtered(args), args, dump=event_dump, key="events", order_by=NEWEST_FIRST)


@blp.route("/events/<lead_id>", methods=["GET"])
@blp.arguments(PageArgs, location="query")
@blp.alt_response(200, schema=EVENTS, success=True)
def lead_events(args, lead_id):
    lead = get_lead(lead_id)
    stmt = select(*EVENT_COLUMNS).join(Lead, Lead.pk == Event.lead_pk).where(Event.lead_pk == lead.pk)
    return paginate(stmt, args, dump=event_dump, key="events", order_by=NEWEST_FIRST)


class EventRulesetScoreSchema(StrictSchema):
    ruleset_id = fields.String()
    name = fields.String()
    is_primary = fields.Boolean()
    rule_id = fields.String(allow_none=True, metadata={"description": "the rule, or for a DECAY event the decay rule"})
    points = fields.Integer(metadata={"description": "what the rule's published weight gives (decay: minus decrease)"})
    floor_adjustment = fields.Integer(metadata={"description": "delta - points: what the floor at 0 changed"})
    delta = fields.Integer()
    score_before = fields.Integer()
    score_after = fields.Integer()


class EventScoreSchema(StrictSchema):
    event_id = fields.String()
    lead_id = fields.String()
    event_type = fields.String()
    occurred_at = UTCDateTime()
    status = fields.String(metadata={"description": "pending, scored or suppressed: only a scored event has deltas"})
    rulesets = fields.List(fields.Nested(EventRulesetScoreSchema), metadata={"description": "primary first"})


@blp.route("/event/<event_id>/score", methods=["GET"])
@blp.response(200, EventScoreSchema)
def score_of_event(event_id):
    """What one event (a DECAY too) did to each ruleset's score: its delta and the totals before and after."""
    found = event_score(db(), current_unit(), int(event_id)) if EVENT_ID.fullmatch(event_id) else None
    if found is None:
        raise not_found("event")
    return found


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(value: str) -> str:
    """A cell a spreadsheet shows as text and never runs as a formula: OWASP's advice, a leading single quote."""
    return "'" + value if value.startswith(FORMULA_START) else value


@blp.route("/events/export", methods=["GET"])
@blp.arguments(EventFilterArgs, location="query")
@blp.alt_response(
    200,
    schema={"type": "string"},
    content_type="text/csv",
    description="a header row, then one row per event, oldest first",
    success=True,
)
def export(args):
    """CSV streamed in chunks from a server-side cursor: memory stays flat however many events the OU has."""
    stmt = filtered(args).order_by(Event.id)
    Session = state().Session

    def rows():
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["id", "lead_id", "event_type", "timestamp", "received_at", "channel", "status", "metadata"])
        with Session() as s:
            result = s.execute(stmt.execution_options(yield_per=EXPORT_CHUNK))
            for chunk in result.partitions():
                for item in event_dump(chunk):
                    writer.writerow(
                        [
                            item["id"],
                            csv_text(item["lead_id"]),
                            csv_text(item["event_type"]),
                            item["timestamp"],
                            item["received_at"],
                            csv_text(item["channel"] or ""),
                            item["status"],
                            csv_text(json.dumps(item["metadata"], ensure_ascii=False)),
                        ]
                    )
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    return Response(
        stream_with_context(rows()),
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=events.csv"},
    )


@blp.route("/channels", methods=["GET"])
@blp.alt_response(200, schema=STRINGS, description="the channels the OU's events name, sorted", success=True)
def channels():
    channel = Event.metadata_["channel"].as_string()
    values = (
        db().execute(select(channel).where(Event.unit_id == current_unit(), channel.isnot(None)).distinct()).scalars()
    )
    return sorted(v for v in values if v)


@blp.route("/event-types", methods=["GET"])
@blp.alt_response(200, schema=STRINGS, description="the OU's event types, sorted", success=True)
def event_types():
    return sorted(db().execute(select(Event.event_type).where(Event.unit_id == current_unit()).distinct()).scalars())


class EventTypePropertiesSchema(StrictSchema):
    event_type = fields.String()
    properties = fields.List(fields.String(), metadata={"description": "metadata keys, sorted"})


@blp.route("/event-types/<event_type>/properties", methods=["GET"])
@blp.alt_response(200, schema=EventTypePropertiesSchema, success=True)
def event_type_properties(event_type):
    """Distinct metadata keys of one event type in the OU, computed by the database."""
    if db().get_bind().dialect.name == "postgresql":
        sql = "SELECT DISTINCT jsonb_object_keys(metadata) FROM events WHERE unit_id = :u AND event_type = :t AND jsonb_typeof(metadata) = 'object'"
    else:
        sql = (
            "SELECT DISTINCT j.key FROM events, json_each(events.metadata) AS j WHERE unit_id = :u AND event_type = :t"
        )
    keys = db().execute(text(sql), {"u": current_unit(), "t": event_type}).scalars()
    return {"event_type": event_type, "properties": sorted(keys)}


class DeleteEventsSchema(StrictSchema):
    ids = fields.List(
        fields.String(validate=validate.Length(min=1, max=30)),
        required=True,
        validate=validate.Length(min=1, max=500, error="1 to 500 ids"),
    )


class DeletedEventsSchema(StrictSchema):
    deleted = fields.Integer()
    not_found = fields.List(fields.String(), metadata={"description": "ids given that name no event of the OU"})
    leads_rescored = fields.Integer()


@blp.route("/events/batch", methods=["DELETE"])
@blp.arguments(DeleteEventsSchema)
@blp.alt_response(200, schema=DeletedEventsSchema, success=True)
def delete_batch(data):
    """Deletes the OU's events by id; their leads are rescored from what remains (asynchronously, by the workers)."""
    wanted = {i: int(i) for i in dict.fromkeys(data["ids"]) if EVENT_ID.fullmatch(i)}
    session = db()
    deleted, leads = delete_events(session, current_unit(), list(wanted.values()))
    session.commit()
    if leads:
        try_kick(state())
    gone = {str(i) for i in deleted}
    return {
        "deleted": len(deleted),
        "not_found": [i for i in dict.fromkeys(data["ids"]) if i not in gone],
        "leads_rescored": len(leads),
    }
