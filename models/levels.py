"""Engagement levels, their change history, and every lead's level transitions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint, false, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import ActorColumns, Base, JSONType, UTCDateTime, new_id, utcnow
from models.events import BIGID

DEFAULT_COLOR = "#64748b"


class EngagementLevel(Base):
    __tablename__ = "engagement_levels"
    __table_args__ = (UniqueConstraint("unit_id", "name"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    min_score: Mapped[int] = mapped_column(Integer)
    max_score: Mapped[int | None] = mapped_column(Integer, nullable=True)
    color: Mapped[str] = mapped_column(String(7), default=DEFAULT_COLOR)
    order: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class LevelHistory(ActorColumns, Base):
    """Every change to an OU's level table, with the whole table after it (for audit and revert)."""

    __tablename__ = "level_history"
    __table_args__ = (Index("ix_level_history_unit_time", "unit_id", "created_at"),)  # newest first, per OU
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(20))
    snapshot: Mapped[list] = mapped_column(JSONType)
    reverted_from: Mapped[str | None] = mapped_column(String(36), nullable=True)  # the entry a revert restored
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LeadLevelChange(Base):
    """Leads moving between levels, the outbox the Slack alerts read: one row per lead a score change moved, one per
    (from level, to level) for a reclassification (lead_pk None; its leads' scores from score to max_score)."""

    __tablename__ = "lead_level_changes"
    __table_args__ = (
        Index("ix_lead_level_changes_unit_time", "unit_id", "changed_at"),
        Index(
            "ix_lead_level_changes_unchecked",
            "unit_id",
            "id",
            postgresql_where=text("NOT alert_checked"),
            sqlite_where=text("NOT alert_checked"),
        ),
    )
    id: Mapped[int] = mapped_column(BIGID, primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"))
    lead_pk: Mapped[int | None] = mapped_column(ForeignKey("leads.pk", ondelete="CASCADE"), index=True, nullable=True)
    from_level_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    to_level_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    score: Mapped[int] = mapped_column(BigInteger)  # the lead's; a reclassification's: the lowest of its leads'
    max_score: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # a reclassification's highest
    leads: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))  # how many leads moved
    cause: Mapped[str] = mapped_column(String(20))  # "score" or "reconfiguration"
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    alert_checked: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )  # the alert job has looked at it
