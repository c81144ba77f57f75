"""Shared marshmallow pieces: strict schemas, RFC 3339 UTC datetimes, pagination arguments."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC

import marshmallow as ma
from marshmallow import ValidationError, fields, post_load, pre_load, validate

MAX_DEPTH = 32


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain NUL characters"
    if text.isascii():  # the usual case, known to CPython without a scan: no surrogate to look for
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode text (no lone surrogates)"
    return None


MAX_PROBLEMS = 50  # a body full of bad strings is named by its first ones: no walk or answer grows with its size


def bad_text(value, path: str = "", depth: int = 0) -> dict[str, str]:
    """Strings PostgreSQL cannot store (NUL, lone surrogates) and nesting deeper than MAX_DEPTH, by path (the first
    MAX_PROBLEMS of them)."""
    found = _walk(value, depth)
    if not found:
        return {}
    out = {}
    for parts, problem in found:
        where = path
        for part in reversed(parts):
            where = f"{where}.{part}" if where else str(part)
        out[where or "_schema"] = problem
    return out


_SCALARS = (int, float, bool, type(None))
_NONE: list = []  # shared "no problem" answer: a clean body allocates nothing per value


def _walk(value, depth: int) -> list[tuple[list, str]]:
    """Problems under value as (path parts innermost first, problem): one walk that builds a path only on the way
    back from a problem, so a clean body (every ingest) costs no string per key."""
    if depth > MAX_DEPTH:
        return [([], f"is nested deeper than {MAX_DEPTH} levels")]
    kind = type(value)
    if kind is str or isinstance(value, str):
        problem = _text_problem(value)
        return [([], problem)] if problem else _NONE
    if kind is dict or isinstance(value, Mapping):
        items, mapping = value.items(), True
    elif kind is list or isinstance(value, list):
        items, mapping = enumerate(value), False
    else:
        return _NONE
    found = _NONE
    for key, item in items:
        if mapping and isinstance(key, str):
            problem = _text_problem(key)
            if problem:
                found = found or []
                found.append(([key], "key " + problem))
        if type(item) in _SCALARS and depth < MAX_DEPTH:  # a scalar is fine unless it is itself too deep
            continue
        below = _walk(item, depth + 1)
        if below:
            for parts, _ in below:
                parts.append(key)
            found = found or []
            found.extend(below)
        if len(found) >= MAX_PROBLEMS:
            del found[MAX_PROBLEMS:]
            break
    return found


class StrictSchema(ma.Schema):
    """Unknown fields are an error that names them, never silently dropped; unstorable text is refused."""

    class Meta:
        unknown = ma.RAISE
        ordered = True

    checked_per_item: tuple[str, ...] = ()  # fields whose items their own schema checks (one bad item, not the body)

    @pre_load
    def refuse_bad_text(self, data, **_):
        checked = data
        if isinstance(data, Mapping) and self.checked_per_item:
            checked = {k: v for k, v in data.items() if k not in self.checked_per_item}
        found = bad_text(checked) if isinstance(checked, (Mapping, list)) else {}
        if isinstance(data, Mapping):
            found.update(loose_scalars(self.load_fields, data))
        if found:
            raise ValidationError({path: [problem] for path, problem in found.items()})
        return data


ASCII_INTEGER = re.compile(r"-?[0-9]{1,30}")


def loose_scalars(load_fields: Mapping[str, fields.Field], data: Mapping) -> dict[str, str]:
    """Values marshmallow would coerce, refused by name: a boolean only as true or false (never 1, "yes" or "on"), and
    an integer given as text (a query parameter) only as ASCII digits (never "1_0", "+5", " 5" or other scripts')."""
    found = {}
    for name, field in load_fields.items():
        key = field.data_key or name
        value = data.get(key)
        if isinstance(field, fields.Boolean) and value is not None and not isinstance(value, bool):
            found[key] = "Not a valid boolean: true or false."
        elif isinstance(field, fields.Integer) and isinstance(value, str) and not ASCII_INTEGER.fullmatch(value):
            found[key] = "Not a valid integer."
    return found


class EchoSchema(StrictSchema):
    """A resource's body that clients may send back as GET returned it: the server-owned fields named in `read_only`
    are ignored on input, not an error."""

    read_only: tuple[str, ...] = ()

    @post_load
    def drop_read_only(self, data, **_):
        for key in self.read_only:
            data.pop(key, None)
        return data


def rfc3339(value) -> str | None:
    """How every timestamp leaves the API: UTC, 'Z', microseconds only when there are some."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds" if value.microsecond else "seconds").replace("+00:00", "Z")


class UTCDateTime(fields.AwareDateTime):
    """RFC 3339 in, 'YYYY-MM-DDTHH:MM:SSZ' out; a naive input is read as UTC."""

    def __init__(self, **kwargs):
        super().__init__(default_timezone=UTC, **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        return rfc3339(value)

    def _deserialize(self, value, attr, data, **kwargs):
        parsed = super()._deserialize(value, attr, data, **kwargs)
        try:
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValidationError("is out of the supported date range")


class PageArgs(StrictSchema):
    page = fields.Integer(validate=validate.Range(min=1, max=1_000_000))
    limit = fields.Integer(validate=validate.Range(min=1, max=500))


class OffsetArgs(StrictSchema):
    limit = fields.Integer(validate=validate.Range(min=1, max=500))
    offset = fields.Integer(validate=validate.Range(min=0, max=1_000_000))
