"""POST /ingest (and /events): validate, then commit the event (grouped with concurrent ones) before the 202."""
from __future__ import annotations


from flask import jsonify, request
from webapp.blueprint import Blueprint
from marshmallow import ValidationError, fields, validate, validates_schema

from concurrent.futures import TimeoutError as FutureTimeout

from sqlalchemy.exc import IntegrityError

from models.base import utcnow
from models.ingest import IncomingEvent, IngestConflict
from models.leads import ALIAS_KINDS, metadata_within, normalize_alias
from webapp import metrics
from webapp.auth import current_unit, principal
from webapp.errors import ApiError, field_paths
from webapp.schema_base import StrictSchema, UTCDateTime, bad_text
from webapp.app_state import close_db, state

blp = Blueprint("ingest", __name__, description="Event ingestion")

RESERVED_TYPES = {"DECAY"}
EVENT_TYPE = validate.And(
    validate.Length(min=1, max=100),
    validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.:\- ]*$", error="must be letters, digits, '_', '.', ':', '-' or spaces"),
    validate.NoneOf(RESERVED_TYPES, error="is reserved for events LeadPulse creates itself"),
)


class AliasSchema(StrictSchema):
    alias_kind = fields.String(required=True, validate=validate.OneOf(ALIAS_KINDS))
    raw_value = fields.String(required=True, validate=validate.Length(min=1, max=320))


class EventInSchema(StrictSchema):
    lead_id = fields.String(validate=validate.Length(min=1, max=200))
    aliases = fields.List(fields.Nested(AliasSchema), validate=validate.Length(max=20))
    alias_kind = fields.String(validate=validate.OneOf(ALIAS_KINDS), metadata={"deprecated": True})
    alias = fields.String(validate=validate.Length(min=1, max=320), metadata={"deprecated": True})
    event_type = fields.String(required=True, validate=EVENT_TYPE)
    timestamp = UTCDateTime()
    metadata = fields.Dict(keys=fields.String())
    event_id = fields.String(validate=validate.Length(min=1, max=200))

    def load(self, data, *, many=None, partial=None, unknown=None):
        """Plain valid events (nearly all of them) skip marshmallow's per-field machinery; anything else takes it."""
        if many is None and partial is None and unknown is None:
            plain = self._plain_event(data)
            if plain is not None:
                return plain
        return super().load(data, many=many, partial=partial, unknown=unknown)

    def _plain_event(self, data) -> dict | None:
        """The same result as the full load for an event every check accepts, else None (the full load then says why).

        Kept exact by tests/test_event_schema.py, which runs both over valid and invalid events.
        """
        if type(data) is not dict or not data.keys() <= _PLAIN_KEYS or bad_text(data):
            return None
        out = {}
        for name, value in data.items():
            if name == "metadata":
                if type(value) is not dict:
                    return None
                out[name] = dict(value)
            elif name == "timestamp":
                try:
                    out[name] = self.fields["timestamp"].deserialize(value, "timestamp", data)
                except ValidationError:
                    return None
            elif name == "aliases":
                low, high = _PLAIN_LENGTH["raw_value"]
                if type(value) is not list or not _PLAIN_LENGTH["aliases"][0] <= len(value) <= _PLAIN_LENGTH["aliases"][1] or not all(
                        type(a) is dict and a.keys() == _ALIAS_KEYS and a["alias_kind"] in _ALIAS_KINDS
                        and type(a["raw_value"]) is str and low <= len(a["raw_value"]) <= high for a in value):
                    return None
                out[name] = [{"alias_kind": a["alias_kind"], "raw_value": a["raw_value"]} for a in value]
            elif type(value) is not str or not _PLAIN_LENGTH[name][0] <= len(value) <= _PLAIN_LENGTH[name][1]:
                return None
            else:
                out[name] = value
        if "event_type" not in out or not (out.get("lead_id") or out.get("aliases")):
            return None
        try:
            EVENT_TYPE(out["event_type"])
        except ValidationError:
            return None
        return out

    @validates_schema
    def lead_identity(self, data, **_):
        if ("alias" in data) != ("alias_kind" in data):
            missing = "alias_kind" if "alias" in data else "alias"
            raise ValidationError(f"{missing} is required with {'alias' if missing == 'alias_kind' else 'alias_kind'}", missing)
        if not data.get("lead_id") and not data.get("aliases") and "alias" not in data:
            raise ValidationError("lead_id or at least one entry in aliases is required", "lead_id")


def _length(field) -> tuple[int, float]:
    """The (min, max) its Length validator declares, so the fast path checks exactly what the schema does."""
    for rule in field.validators:
        for inner in getattr(rule, "validators", (rule,)):  # validate.And holds several
            if isinstance(inner, validate.Length):
                return inner.min or 0, inner.max if inner.max is not None else float("inf")
    return 0, float("inf")


_PLAIN_LENGTH = {name: _length(EventInSchema._declared_fields[name]) for name in ("lead_id", "event_type", "event_id", "aliases")}
_PLAIN_LENGTH["raw_value"] = _length(AliasSchema._declared_fields["raw_value"])
_ALIAS_KINDS = frozenset(AliasSchema._declared_fields["alias_kind"].validators[0].choices)
_ALIAS_KEYS = set(AliasSchema._declared_fields)
# The deprecated alias/alias_kind pair takes the full load.
_PLAIN_KEYS = {name for name, field in EventInSchema._declared_fields.items() if not field.metadata.get("deprecated")}


BATCH_MAX = 500


class BatchInSchema(StrictSchema):
    """Items are validated one by one in the view, so one bad event does not reject the others."""

    checked_per_item = ("events",)

    events = fields.List(fields.Raw(), required=True, validate=validate.Length(min=1, max=BATCH_MAX, error="1 to 500 events"),
                         metadata={"description": "up to 500 events, each as POST /ingest takes it"})


class IngestedSchema(StrictSchema):
    message = fields.String()
    event_id = fields.String(allow_none=True, metadata={
        "description": "the idempotency key the client sent (event_id, else the Idempotency-Key header); null if none"})
    id = fields.String(metadata={"description": "LeadPulse's id of the stored event (as GET /events shows it)"})
    lead_id = fields.String()
    duplicate = fields.Boolean()
    metadata = fields.Dict()


def to_incoming(data: dict, header_key: str | None, max_metadata: int, key_header: str = "Idempotency-Key") -> IncomingEvent:
    """Turn a validated body into the model's input; size and key checks that need the whole body."""
    metadata = data.get("metadata") or {}
    if not metadata_within(metadata, max_metadata):
        raise ApiError(413, "payload_too_large", f"metadata exceeds {max_metadata // 1024} KB", {"metadata": ["too large"]})
    key = data.get("event_id")
    if key and header_key and key != header_key:
        raise ApiError(400, "validation_error", f"event_id disagrees with the {key_header} header",
                       {"event_id": [f"differs from {key_header} header"]})
    if header_key is not None and (not 1 <= len(header_key) <= 200 or not header_key.isprintable()):
        raise ApiError(400, "validation_error", f"{key_header} must be 1-200 printable characters",
                       {key_header: ["1-200 printable characters"]})
    aliases = [(a["alias_kind"], a["raw_value"]) for a in data.get("aliases", [])]
    if "alias" in data:
        aliases.append((data["alias_kind"], data["alias"]))
    normalized = list(dict.fromkeys((kind, normalize_alias(kind, raw)) for kind, raw in aliases))
    if any(not value for _, value in normalized):
        raise ApiError(400, "validation_error", "aliases: a raw_value is empty after trimming", {"aliases": ["raw_value is empty after trimming"]})
    if any(len(value) > 320 for _, value in normalized):  # lowercasing can lengthen text ('İ' -> 'i̇')
        raise ApiError(400, "validation_error", "aliases: a raw_value is longer than 320 characters once normalized",
                       {"aliases": ["longer than 320 characters once normalized"]})
    return IncomingEvent(
        event_type=data["event_type"],
        occurred_at=data.get("timestamp") or utcnow(),
        metadata=metadata,
        lead_id=data.get("lead_id"),
        aliases=normalized,
        idempotency_key=key or header_key,
    )


def store(incoming: list[IncomingEvent], org_id: str | None = None, unit_id: str | None = None):
    """Commit with concurrent requests (group commit); a 503 only for events that were not written."""
    if unit_id is None:
        org_id, unit_id = principal().org_id, current_unit()
    close_db()  # release this request's connection (and SQLite's write lock) before the committer needs it
    return commit_events(state(), org_id, unit_id, incoming)


def commit_events(app_state, org_id: str, unit_id: str, incoming: list[IncomingEvent]):
    """store() without a Flask request (POST /ingest's lane calls it too)."""
    try:
        results = app_state.committer.submit(org_id, unit_id, incoming)
    except (FutureTimeout, IngestConflict, IntegrityError):  # IntegrityError: its lead was deleted meanwhile
        raise ApiError(503, "unavailable", "the events were not stored; retry (event_ids make retries safe)",
                       headers={"Retry-After": "1"})
    duplicates = sum(r.duplicate for r in results)
    if duplicates:  # each inc is a locked write to the multiprocess file: skip a zero one
        metrics.EVENTS_DUPLICATE.inc(duplicates)
    if len(results) > duplicates:
        metrics.EVENTS_INGESTED.inc(len(results) - duplicates)
    return results


@blp.route("/ingest", methods=["POST"], aliases=("/events",))
@blp.arguments(EventInSchema)
@blp.response(202, IngestedSchema)
def ingest(data):
    incoming = to_incoming(data, request.headers.get("Idempotency-Key"), state().settings.max_metadata_bytes)
    return ingested(incoming, store([incoming])[0])


def ingested(incoming: IncomingEvent, result):
    """The 202 of one stored event (plain JSON: the schema documents it; dumping through marshmallow adds nothing)."""
    resp = jsonify(ingested_payload(incoming, result))
    resp.status_code = 202
    return resp


def ingested_payload(incoming: IncomingEvent, result) -> dict:
    return {
        "message": "duplicate event ignored" if result.duplicate else "event ingested",
        "event_id": incoming.idempotency_key,
        "id": str(result.event_id),
        "lead_id": result.lead_id,
        "duplicate": result.duplicate,
        "metadata": incoming.metadata,
    }


ITEM_SCHEMA = EventInSchema()  # one instance: webargs and marshmallow schemas are reusable across requests


@blp.route("/ingest/batch", methods=["POST"])
@blp.arguments(BatchInSchema)
@blp.response(202, description="per-item results: accepted, duplicate or rejected (with the reason)")
def ingest_batch(data):
    """Up to 500 events in one transaction; each item succeeds or fails on its own, in order."""
    limit = state().settings.max_metadata_bytes
    results: list[dict] = []
    incoming, positions = [], []
    for i, item in enumerate(data["events"]):
        try:
            incoming.append(parse_event(item, limit))
            positions.append(i)
            results.append({"index": i, "status": "accepted"})
        except (ValidationError, ApiError) as exc:
            results.append({"index": i, "status": "rejected", "error": rejection(exc)})
    if not incoming:
        raise ApiError(400, "validation_error", "every event in the batch was rejected",
                       {f"events.{r['index']}.{field}": msgs for r in results for field, msgs in r["error"]["details"].items()}
                       or {"events": ["rejected"]})
    store_items(results, positions, incoming)
    counts = {k: sum(r["status"] == k for r in results) for k in ("accepted", "duplicate", "rejected")}
    resp = jsonify({**counts, "results": results})
    resp.status_code = 202
    return resp


def parse_event(body, max_metadata: int, key: str | None = None, key_header: str = "Idempotency-Key") -> IncomingEvent:
    """One item of a batch, an import or a webhook, checked exactly as POST /ingest checks its body."""
    if not isinstance(body, dict):
        raise ValidationError({"_schema": ["each event must be a JSON object"]})
    return to_incoming(ITEM_SCHEMA.load(body), key, max_metadata, key_header=key_header)


def rejection(exc: ValidationError | ApiError) -> dict:
    """What a per-item result says of a refused item, with field paths named as POST /ingest names them."""
    if isinstance(exc, ValidationError):
        return {"code": "validation_error", "message": "invalid event", "details": field_paths(exc.messages)}
    return {"code": exc.code, "message": exc.message, "details": exc.details or {"_schema": [exc.message]}}


def store_items(results: list[dict], positions: list[int], incoming: list[IncomingEvent],
                org_id: str | None = None, unit_id: str | None = None) -> None:
    """Store the accepted items in one transaction and complete their results (accepted or duplicate, key and ids)."""
    for i, event, stored in zip(positions, incoming, store(incoming, org_id, unit_id)):
        results[i].update(status="duplicate" if stored.duplicate else "accepted", event_id=event.idempotency_key,
                          id=str(stored.event_id), lead_id=stored.lead_id)
