"""Keyset pagination: the next page starts after the last row's sort key, found through an index, so a page deep in a
large OU costs what the first does (an OFFSET reads and drops every row before it)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, true, tuple_


@dataclass(frozen=True)
class Key:
    """One sort column: its direction, the Python type of its values, and whether it holds NULLs, which sort as its
    lowest value (SQLite's order; PostgreSQL is told so): last going down, first going up."""

    column: object
    descending: bool
    kind: type
    nullable: bool = False

    def order(self):
        if self.descending:
            return self.column.desc().nulls_last() if self.nullable else self.column.desc()
        return self.column.asc().nulls_first() if self.nullable else self.column.asc()

    def value_of(self, row):
        return getattr(row, self.column.key)


class BadCursor(ValueError):
    """A cursor this sort did not make (edited, or from another sort)."""


def order_by(keys: tuple[Key, ...]) -> list:
    return [key.order() for key in keys]


def segments(keys: tuple[Key, ...], values: list) -> list:
    """What sorts after the row whose keys hold values, as predicates to read one after another, each a range of the
    index the keys are in: a row comparison, (k1, k2) < (v1, v2), which PostgreSQL and SQLite seek to (an OR of the
    same terms makes PostgreSQL filter every row before the cursor). Keys run in one direction; only the first may
    hold NULLs, which sort lowest: after every value going down, before them going up."""
    first, columns = keys[0], [key.column for key in keys]
    assert all(key.descending == first.descending for key in keys) and not any(key.nullable for key in keys[1:])

    def beyond(cols, vals):
        row, bound = (tuple_(*cols), tuple_(*vals)) if len(cols) > 1 else (cols[0], vals[0])
        return row < bound if first.descending else row > bound

    if values[0] is not None:
        return [beyond(columns, values)] + ([columns[0].is_(None)] if first.nullable and first.descending else [])
    if not first.nullable:
        raise BadCursor("null")
    among_nulls = and_(columns[0].is_(None), beyond(columns[1:], values[1:]))
    return [among_nulls] if first.descending else [among_nulls, columns[0].isnot(None)]


def cursor_of(keys: tuple[Key, ...], row) -> str:
    """The opaque cursor of the page after row."""
    values = []
    for key in keys:
        value = key.value_of(row)
        values.append(value.isoformat() if isinstance(value, datetime) else value)
    return base64.urlsafe_b64encode(json.dumps(values, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(keys: tuple[Key, ...], cursor: str) -> list:
    """The key values a cursor carries, each of its key's type; BadCursor for anything else."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadCursor(cursor)
    if not isinstance(values, list) or len(values) != len(keys):
        raise BadCursor(cursor)
    out = []
    for key, value in zip(keys, values):
        if value is None and key.nullable:
            out.append(None)
        elif key.kind is datetime and isinstance(value, str):
            try:
                out.append(datetime.fromisoformat(value))
            except ValueError:
                raise BadCursor(cursor)
        elif key.kind is int and isinstance(value, int) and not isinstance(value, bool):
            out.append(value)
        elif key.kind is str and isinstance(value, str) and "\x00" not in value:
            out.append(value)
        else:
            raise BadCursor(cursor)
    return out


def page(session, stmt, keys: tuple[Key, ...], cursor: str | None, limit: int) -> tuple[list, str | None]:
    """(up to limit rows after the cursor, the cursor of the page after them or None when they are the last)."""
    parts = segments(keys, decode(keys, cursor)) if cursor else [true()]
    rows = []
    for part in parts:
        rows += session.execute(stmt.where(part).order_by(*order_by(keys)).limit(limit + 1 - len(rows))).all()
        if len(rows) > limit:
            break
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (cursor_of(keys, rows[-1]) if more else None)
