"""Engagement rulesets, their rules, and each lead's score per ruleset."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, UTCDateTime, new_id, utcnow

DRAFT, PUBLISHED = "draft", "published"
DECAY_UNITS = {"hours": 3600, "days": 86400, "weeks": 7 * 86400}  # a decay rule's unit, in seconds


class Ruleset(Base):
    __tablename__ = "rulesets"
    __table_args__ = (
        UniqueConstraint("unit_id", "name"),
        Index(
            "uq_rulesets_one_primary",
            "unit_id",
            unique=True,
            postgresql_where=text("is_primary"),
            sqlite_where=text("is_primary = 1"),
        ),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    score_column: Mapped[str] = mapped_column(String(50), default="total_score")
    is_primary: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[str] = mapped_column(String(10), default=DRAFT)
    start_date: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_date: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The rules as they were when last published: what scores, so rule edits wait for republishing.
    published_rules: Mapped[list | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Rule(Base):
    __tablename__ = "rules"
    __table_args__ = (UniqueConstraint("ruleset_id", "event_type"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), index=True)
    ruleset_id: Mapped[str] = mapped_column(ForeignKey("rulesets.id", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(100))
    weight: Mapped[int] = mapped_column(Integer)
    icon: Mapped[str | None] = mapped_column(String(50), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    start_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    updated_by: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class LeadScore(Base):
    __tablename__ = "lead_scores"
    lead_pk: Mapped[int] = mapped_column(ForeignKey("leads.pk", ondelete="CASCADE"), primary_key=True)
    ruleset_id: Mapped[str] = mapped_column(ForeignKey("rulesets.id", ondelete="CASCADE"), primary_key=True, index=True)
    unit_id: Mapped[str] = mapped_column(String(36))
    score: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DecayRule(Base):
    """While a lead has had no event for inactive_for units, it loses decrease points once per such period."""

    __tablename__ = "decay_rules"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), index=True)
    inactive_for: Mapped[int] = mapped_column(Integer)
    unit: Mapped[str] = mapped_column(String(10))
    decrease: Mapped[int] = mapped_column(Integer)
    # Periods ending after this moment apply: the rule's creation, or its last edit (docs/scoring.md).
    applies_from: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
