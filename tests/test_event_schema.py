"""The event schema's fast path for plain events must give exactly what the full marshmallow load gives."""

import itertools

import pytest
from marshmallow import Schema, ValidationError

from webapp.services.event_input import EventInSchema

SCHEMA = EventInSchema()
BASE = [
    {"lead_id": "lead-1", "event_type": "page_view"},
    {
        "lead_id": "L",
        "event_type": "Form Submitted: demo",
        "event_id": "k-1",
        "metadata": {"url": "/p", "n": 3, "x": [1, {"a": None}]},
    },
    {
        "aliases": [{"alias_kind": "email", "raw_value": " Ann@Example.COM "}],
        "event_type": "email.open",
        "timestamp": "2026-11-20T10:00:00Z",
    },
    {
        "lead_id": "L",
        "aliases": [{"alias_kind": "cookie", "raw_value": "c"}, {"alias_kind": "phone", "raw_value": "+1 555"}],
        "event_type": "x",
        "timestamp": "2026-11-20T10:00:00.123456+02:00",
        "metadata": {},
    },
]
VALUES = [
    None,
    0,
    1.5,
    True,
    "",
    "a",
    "x" * 100,
    "x" * 101,
    "x" * 200,
    "x" * 201,
    "x" * 320,
    "x" * 321,
    "DECAY",
    "bad/type",
    ".",
    "..",
    "export",
    "Export",
    "ünïcode",
    "nul\x00",
    "\ud800",
    [],
    ["a"],
    {},
    {"a": 1},
    {"a": "\x00"},
    {"\x00": 1},
    "2026-11-20T10:00:00Z",
    "2026-11-20T10:00:00",
    "2026-11-20",
    "20261120",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
]
ALIASES = [
    [],
    [{"alias_kind": "email", "raw_value": "a@b.c"}],
    [{"alias_kind": "fax", "raw_value": "1"}],
    [{"alias_kind": "email", "raw_value": ""}],
    [{"alias_kind": "email", "raw_value": "x" * 321}],
    [{"alias_kind": "email", "raw_value": 5}],
    [{"alias_kind": "email"}],
    [{"alias_kind": "email", "raw_value": "a", "x": 1}],
    ["a@b.c"],
    [None],
    [{"alias_kind": "cookie", "raw_value": str(i)} for i in range(20)],
    [{"alias_kind": "cookie", "raw_value": str(i)} for i in range(21)],
    {"alias_kind": "email", "raw_value": "a"},
]
FIELDS = [
    "lead_id",
    "event_type",
    "event_id",
    "timestamp",
    "metadata",
    "aliases",
    "alias",
    "alias_kind",
    "unknown_field",
]


def cases():
    for base, field in itertools.product(BASE, FIELDS):
        yield {k: v for k, v in base.items() if k != field}
        for value in VALUES + (ALIASES if field == "aliases" else []):
            yield {**base, field: value}
    yield {"alias_kind": "email", "alias": "a@b.c", "event_type": "x"}
    yield {"event_type": "x", "aliases": [], "lead_id": ""}
    yield ["not", "an", "object"]
    yield "text"


def full_load(data):
    return Schema.load(SCHEMA, data)  # marshmallow's own load, bypassing the fast path


@pytest.mark.parametrize("data", list(cases()), ids=lambda d: repr(d)[:60])
def test_fast_path_agrees_with_the_full_load(data):
    plain = SCHEMA._plain_event(data)
    try:
        expected = full_load(data)
    except ValidationError:
        assert plain is None, "the fast path accepted what the full load refuses"
        with pytest.raises(ValidationError):
            SCHEMA.load(data)
        return
    if plain is not None:
        assert plain == expected
        assert {k: type(v) for k, v in plain.items()} == {k: type(v) for k, v in expected.items()}
    assert SCHEMA.load(data) == expected


def test_plain_events_take_the_fast_path():
    """Otherwise the agreement above would hold trivially, and the speed would be gone."""
    for data in BASE:
        assert SCHEMA._plain_event(data) == full_load(data)


def test_metadata_within_agrees_with_the_measured_size():
    """The hot path's upper bound never lets through what metadata_size would refuse, nor refuses what it allows."""
    import random

    from models.lead_metadata import metadata_size, metadata_within

    rng = random.Random(1)
    chars = ["a", "\x01", "é", "😀", '"', "\\", "\n", "\u2028"]
    text = lambda n: "".join(rng.choice(chars) for _ in range(rng.randrange(n)))
    for _ in range(5000):
        values = [
            lambda: text(30),
            lambda: rng.randrange(-(10**29), 10**29),
            lambda: rng.random() * 10 ** rng.randrange(-300, 300),
            lambda: True,
            lambda: None,
            lambda: 10**40,
            lambda: [text(5)],
            lambda: {"n": text(5)},
        ]
        metadata = {text(8): rng.choice(values)() for _ in range(rng.randrange(6))}
        limit = rng.randrange(400)
        assert metadata_within(metadata, limit) == (metadata_size(metadata) <= limit), (metadata, limit)


def _problems(value, path: str = "", depth: int = 0) -> dict[str, str]:
    """The plain definition bad_text must answer exactly as: every problem by its dotted path."""
    from collections.abc import Mapping

    from webapp.schema_base import MAX_DEPTH, _text_problem

    here = path or "_schema"
    if depth > MAX_DEPTH:
        return {here: f"is nested deeper than {MAX_DEPTH} levels"}
    if isinstance(value, str):
        problem = _text_problem(value)
        return {here: problem} if problem else {}
    found: dict[str, str] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            sub = f"{path}.{key}" if path else str(key)
            problem = _text_problem(key) if isinstance(key, str) else None
            if problem:
                found[sub] = "key " + problem
            found.update(_problems(item, sub, depth + 1))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.update(_problems(item, f"{path}.{i}" if path else str(i), depth + 1))
    return found


def test_the_fast_clean_check_agrees_with_the_full_walk():
    """bad_text, which builds no path on a clean body, answers exactly as the walk that names every path."""
    import random

    from webapp.schema_base import MAX_DEPTH, bad_text

    rng = random.Random(2)
    texts = ["ok", "\x00", "a\x00b", "\ud800", "é\udfff", "é", "", "😀"]

    def value(depth):
        kind = rng.randrange(9 if depth < MAX_DEPTH + 3 else 5)
        if kind < 3:
            return rng.choice(texts)
        if kind == 3:
            return rng.choice([0, 1.5, True, None, 10**40])
        if kind == 4:
            return []
        if kind < 7:
            return {rng.choice(texts): value(depth + 1) for _ in range(rng.randrange(3))}
        return [value(depth + 1) for _ in range(rng.randrange(3))]

    def nested(depth):
        v = value(depth)
        for _ in range(depth):
            v = [v] if rng.random() < 0.5 else {"k": v}
        return v

    seen = {True: 0, False: 0}
    for _ in range(20000):
        v = nested(rng.choice([0, 1, 2, MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1]))
        assert bad_text(v) == _problems(v), v
        assert bad_text(v, "body") == _problems(v, "body"), v
        seen[not bad_text(v)] += 1
    assert min(seen.values()) > 1000  # both answers well exercised
