"""Declarative base and column types that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import JSON, DateTime, Index, MetaData, String
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on both backends (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class ActorColumns:
    """Who made a configuration change, as they were then (a member's email, a credential's name), so a history entry
    still says who after the member or credential is gone (models/change_history.py writes them)."""

    actor: Mapped[str | None] = mapped_column(String(200), nullable=True)  # the member's or credential's id
    actor_kind: Mapped[str | None] = mapped_column(String(12), nullable=True)  # "member", "credential" or "system"
    actor_name: Mapped[str | None] = mapped_column(String(320), nullable=True)


def prefix_index(name: str, column: str, lead: str) -> Index:
    """PostgreSQL only: (unit_id, column) in byte order (text_pattern_ops), of which a prefix is a range whatever the
    database's collation, with the lead each row names, for the search by prefix (models/lead_ops.py _starts_with)."""
    ops = {column: "text_pattern_ops"}
    return Index(name, "unit_id", column, postgresql_ops=ops, postgresql_include=[lead]).ddl_if(dialect="postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(when: datetime) -> int:
    """Microseconds since 1970, exactly (no float): decay periods are counted in them."""
    delta = when - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
