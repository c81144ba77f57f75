"""The event input contract (body, batch, 202): beside the pipeline that applies it to every entry point, not in a blueprint."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from marshmallow import ValidationError, fields, validate, validates_schema

from models.base import utcnow
from models.leads import ALIAS_KINDS
from webapp.blueprint import ErrorBodySchema
from webapp.schema_base import StrictSchema, UTCDateTime, bad_text
from webapp.services.lead_ids import LEAD_ID, LEAD_ID_RULE, lead_id_problem

RESERVED_TYPES = {"DECAY"}
EVENT_TYPE = validate.And(
    validate.Length(min=1, max=100),
    validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9_.:\- ]*$", error="must be letters, digits, '_', '.', ':', '-' or spaces"),
    validate.NoneOf(RESERVED_TYPES, error="is reserved for events LeadPulse creates itself"),
)


EARLIEST_EVENT = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_ALLOWANCE = timedelta(days=1)  # a client's clock may run fast; an event a year ahead is a bug, not a visit


def event_time(value: datetime) -> None:
    """An event happened since 1970 and at most a day ahead of our clock: year 1 or 9999 would skew every score."""
    if not EARLIEST_EVENT <= value <= utcnow() + FUTURE_ALLOWANCE:
        raise ValidationError("must be between 1970-01-01 and a day from now")


class AliasSchema(StrictSchema):
    alias_kind = fields.String(required=True, validate=validate.OneOf(ALIAS_KINDS))
    raw_value = fields.String(required=True, validate=validate.Length(min=1, max=320))


class EventInSchema(StrictSchema):
    lead_id = fields.String(validate=LEAD_ID, metadata={"description": LEAD_ID_RULE})
    aliases = fields.List(fields.Nested(AliasSchema), validate=validate.Length(max=20))
    alias_kind = fields.String(validate=validate.OneOf(ALIAS_KINDS), metadata={"deprecated": True})
    alias = fields.String(validate=validate.Length(min=1, max=320), metadata={"deprecated": True})
    event_type = fields.String(required=True, validate=EVENT_TYPE)
    timestamp = UTCDateTime(validate=event_time)
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
                if (
                    type(value) is not list
                    or not _PLAIN_LENGTH["aliases"][0] <= len(value) <= _PLAIN_LENGTH["aliases"][1]
                    or not all(
                        type(a) is dict
                        and a.keys() == _ALIAS_KEYS
                        and a["alias_kind"] in _ALIAS_KINDS
                        and type(a["raw_value"]) is str
                        and low <= len(a["raw_value"]) <= high
                        for a in value
                    )
                ):
                    return None
                out[name] = [{"alias_kind": a["alias_kind"], "raw_value": a["raw_value"]} for a in value]
            elif type(value) is not str or not _PLAIN_LENGTH[name][0] <= len(value) <= _PLAIN_LENGTH[name][1]:
                return None
            elif name == "lead_id" and lead_id_problem(value):
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
            raise ValidationError(
                f"{missing} is required with {'alias' if missing == 'alias_kind' else 'alias_kind'}", missing
            )
        if not data.get("lead_id") and not data.get("aliases") and "alias" not in data:
            raise ValidationError("lead_id or at least one entry in aliases is required", "lead_id")


def _length(field) -> tuple[int, float]:
    """The (min, max) its Length validator declares, so the fast path checks exactly what the schema does."""
    for rule in field.validators:
        for inner in getattr(rule, "validators", (rule,)):  # validate.And holds several
            if isinstance(inner, validate.Length):
                return inner.min or 0, inner.max if inner.max is not None else float("inf")
    return 0, float("inf")


_PLAIN_LENGTH = {
    name: _length(EventInSchema._declared_fields[name]) for name in ("lead_id", "event_type", "event_id", "aliases")
}
_PLAIN_LENGTH["raw_value"] = _length(AliasSchema._declared_fields["raw_value"])
_ALIAS_KINDS = frozenset(AliasSchema._declared_fields["alias_kind"].validators[0].choices)
_ALIAS_KEYS = set(AliasSchema._declared_fields)
# The deprecated alias/alias_kind pair takes the full load.
_PLAIN_KEYS = {name for name, field in EventInSchema._declared_fields.items() if not field.metadata.get("deprecated")}
_UNCHECKED = _PLAIN_KEYS - {"metadata", "timestamp", *_PLAIN_LENGTH}
if _UNCHECKED:  # a field added to the schema needs its check in _plain_event too (else a valid body would fail there)
    raise RuntimeError(f"EventInSchema._plain_event has no check for {sorted(_UNCHECKED)}")


BATCH_MAX = 500


class BatchInSchema(StrictSchema):
    """Items are validated one by one in the view, so one bad event does not reject the others."""

    checked_per_item = ("events",)

    events = fields.List(
        fields.Raw(),
        required=True,
        validate=validate.Length(min=1, max=BATCH_MAX, error="1 to 500 events"),
        metadata={"description": "up to 500 events, each as POST /ingest takes it"},
    )


class IngestedSchema(StrictSchema):
    message = fields.String()
    event_id = fields.String(
        allow_none=True,
        metadata={
            "description": "the idempotency key the client sent (event_id, else the Idempotency-Key header); null if none"
        },
    )
    id = fields.String(metadata={"description": "LeadPulse's id of the stored event (as GET /events shows it)"})
    lead_id = fields.String()
    duplicate = fields.Boolean()
    metadata = fields.Dict()


class ItemResultSchema(StrictSchema):
    """One item of a batch (or a CSV chunk, or a Segment call), in order."""

    index = fields.Integer(metadata={"description": "its place in what was sent, from 0"})
    status = fields.String(validate=validate.OneOf(["accepted", "duplicate", "rejected"]))
    event_id = fields.String(allow_none=True, metadata={"description": "as for POST /ingest; not when rejected"})
    id = fields.String(metadata={"description": "as for POST /ingest; not when rejected"})
    lead_id = fields.String(metadata={"description": "not when rejected"})
    error = fields.Nested(ErrorBodySchema, metadata={"description": "why it was rejected, as an error's body says"})


class BatchResultSchema(StrictSchema):
    accepted = fields.Integer()
    duplicate = fields.Integer()
    rejected = fields.Integer()
    results = fields.List(fields.Nested(ItemResultSchema))
