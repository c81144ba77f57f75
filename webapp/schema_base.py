"""Shared marshmallow pieces: strict schemas, RFC 3339 UTC datetimes, pagination arguments."""
from __future__ import annotations

from datetime import timezone

import marshmallow as ma
from marshmallow import fields, validate


class StrictSchema(ma.Schema):
    """Unknown fields are an error that names them, never silently dropped."""

    class Meta:
        unknown = ma.RAISE
        ordered = True


class UTCDateTime(fields.AwareDateTime):
    """RFC 3339 in, 'YYYY-MM-DDTHH:MM:SSZ' out; a naive input is read as UTC."""

    def __init__(self, **kwargs):
        super().__init__(default_timezone=timezone.utc, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        value = value.astimezone(timezone.utc)
        text = value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
        return text.replace("+00:00", "Z")

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).astimezone(timezone.utc)


class PageArgs(StrictSchema):
    page = fields.Integer(validate=validate.Range(min=1))
    limit = fields.Integer(validate=validate.Range(min=1, max=500))
