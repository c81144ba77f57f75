"""Leads and their aliases; a lead is identified by lead_id or by any alias within its OU."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from models.base import Base, JSONType, UTCDateTime, utcnow

ALIAS_KINDS = ("email", "phone", "external_id", "cookie", "social")


class Lead(Base):
    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("unit_id", "lead_id"),
        Index("ix_leads_unit_score", "unit_id", "score"),
        Index("ix_leads_unit_level", "unit_id", "level_id"),
    )
    pk: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"))
    lead_id: Mapped[str] = mapped_column(String(200))
    metadata_: Mapped[dict] = mapped_column("metadata", JSONType, default=dict)
    account_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    owner_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    owner_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    merged_into: Mapped[str | None] = mapped_column(String(200), nullable=True)
    score: Mapped[int] = mapped_column(BigInteger, default=0)
    level_id: Mapped[str | None] = mapped_column(ForeignKey("engagement_levels.id", ondelete="SET NULL"), nullable=True)
    level_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_event_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # (occurred_at, id) of the last event applied: a pending event sorting before it forces a replay.
    scored_through_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    scored_through_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LeadAlias(Base):
    __tablename__ = "lead_aliases"
    __table_args__ = (UniqueConstraint("unit_id", "kind", "value"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"))
    lead_pk: Mapped[int] = mapped_column(ForeignKey("leads.pk", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    value: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def primary_email():
    """Correlated subquery: the lead's primary email, its oldest email alias (lowest id on a tie), so it stays put."""
    return (
        select(LeadAlias.value)
        .where(LeadAlias.lead_pk == Lead.pk, LeadAlias.kind == "email")
        .order_by(LeadAlias.created_at, LeadAlias.id)
        .limit(1)
        .scalar_subquery()
    )


def primary_emails(session: Session, lead_pks: list[int]) -> dict[int, str | None]:
    """The primary email of each of a page of leads, in one query."""
    if not lead_pks:
        return {}
    return dict(session.execute(select(Lead.pk, primary_email()).where(Lead.pk.in_(lead_pks))).all())


def aliases_of(session: Session, lead_pk: int) -> list[LeadAlias]:
    """A lead's aliases, oldest first (so its primary email is the first email listed)."""
    return list(
        session.execute(
            select(LeadAlias).where(LeadAlias.lead_pk == lead_pk).order_by(LeadAlias.created_at, LeadAlias.id)
        ).scalars()
    )


def merged_metadata(current: dict | None, changes: dict) -> dict:
    """Keys given are set, a key given as None is removed, others stay (PATCH semantics, also for identify traits)."""
    out = dict(current or {})
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def metadata_size(metadata) -> int:
    """Bytes of metadata as JSON, measured one way everywhere the 100 KB limit applies."""
    return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False, default=str).encode())


def metadata_within(metadata, limit: int) -> bool:
    """metadata_size(metadata) <= limit; the usual small flat dict passes on an upper bound, unserialized (ingest is hot).

    A character takes at most 6 bytes in the JSON (an escape like \\u0001; UTF-8 needs at most 4), a float or an int
    under 10**30 at most 32, quotes, colon and comma 4 per item.
    """
    if type(metadata) is dict and len(metadata) <= 64:
        bound = 2
        for key, value in metadata.items():
            kind = type(value)
            if type(key) is not str:
                break
            if kind is str:
                bound += 6 * (len(key) + len(value)) + 6
            elif kind in _SHORT_SCALARS and (kind is not int or -(10**30) < value < 10**30):
                bound += 6 * len(key) + 4 + 32
            else:
                break
        else:
            if bound <= limit:
                return True
    return metadata_size(metadata) <= limit


_SHORT_SCALARS = (int, float, bool, type(None))


def normalize_alias(kind: str, raw: str) -> str:
    """One spelling per identity, so 'Ada@X.com ' and 'ada@x.com' find the same lead."""
    value = raw.strip()
    if kind == "email":
        return value.lower()
    if kind == "phone":
        keep = "".join(ch for ch in value if ch.isdigit() or ch == "+")
        return keep or value
    return value


class LeadDeletion(Base):
    """A requested lead deletion: the job removes the lead with its events and scores; the row stays as the receipt."""

    __tablename__ = "lead_deletions"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), index=True)
    lead_id: Mapped[str] = mapped_column(String(200))
    lead_pk: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(12), default="pending")  # pending, completed, failed
    error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
