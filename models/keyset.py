"""Keyset pagination: the next page starts after the last row's sort key, found through an index, so a page deep in a
large OU costs what the first does (an OFFSET reads and drops every row before it)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, false, or_


@dataclass(frozen=True)
class Key:
    """One sort column: its direction, the Python type of its values, and whether it holds NULLs (sorted last)."""

    column: object
    descending: bool
    kind: type
    nullable: bool = False

    def order(self):
        ordered = self.column.desc() if self.descending else self.column.asc()
        return ordered.nulls_last() if self.nullable else ordered

    def value_of(self, row):
        return getattr(row, self.column.key)


class BadCursor(ValueError):
    """A cursor this sort did not make (edited, or from another sort)."""


def order_by(keys: tuple[Key, ...]) -> list:
    return [key.order() for key in keys]


def after(keys: tuple[Key, ...], values: list) -> object:
    """Rows that sort after the row whose keys hold values: (k1 after v1) or (k1 = v1 and k2 after v2) or ..."""
    terms, equal = [], []
    for key, value in zip(keys, values):
        col = key.column
        if value is None:  # NULLs sort last: nothing comes after a NULL in this column but by the next keys
            equal.append(col.is_(None))
            continue
        beyond = col < value if key.descending else col > value
        if key.nullable:
            beyond = or_(beyond, col.is_(None))
        terms.append(and_(*equal, beyond))
        equal.append(col == value)
    return or_(*terms) if terms else false()


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
    if cursor:
        stmt = stmt.where(after(keys, decode(keys, cursor)))
    rows = session.execute(stmt.order_by(*order_by(keys)).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (cursor_of(keys, rows[-1]) if more else None)
