"""Shared marshmallow pieces: strict schemas, RFC 3339 UTC datetimes, pagination arguments."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import timezone

import marshmallow as ma
from marshmallow import ValidationError, fields, pre_load, validate


def nul_paths(value, path: str = "") -> list[str]:
    """Where a NUL character hides in a JSON value; PostgreSQL text and JSONB cannot store one."""
    if isinstance(value, str):
        return [path or "_schema"] if "\x00" in value else []
    if isinstance(value, Mapping):
        found = [f"{path}.{k}" if path else str(k) for k in value if isinstance(k, str) and "\x00" in k]
        for key, item in value.items():
            found += nul_paths(item, f"{path}.{key}" if path else str(key))
        return found
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in nul_paths(item, f"{path}.{i}" if path else str(i))]
    return []


class StrictSchema(ma.Schema):
    """Unknown fields are an error that names them, never silently dropped; NUL characters are refused."""

    class Meta:
        unknown = ma.RAISE
        ordered = True

    @pre_load
    def refuse_nul(self, data, **_):
        found = nul_paths(data) if isinstance(data, (Mapping, list)) else []
        if found:
            raise ValidationError({path: ["must not contain NUL characters"] for path in found})
        return data


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
    page = fields.Integer(validate=validate.Range(min=1, max=1_000_000))
    limit = fields.Integer(validate=validate.Range(min=1, max=500))
