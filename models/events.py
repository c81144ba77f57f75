"""Stored events (the source of truth scores are rebuilt from) and the deltas they produced."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, SmallInteger, String, false, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, UTCDateTime, utcnow

PENDING, SCORED, SUPPRESSED = 0, 1, 2
STATUS_NAMES = {PENDING: "pending", SCORED: "scored", SUPPRESSED: "suppressed"}
BIGID = BigInteger().with_variant(Integer, "sqlite")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        # Pending events in arrival order: which OUs wait longest, and since when (score_batch.py). Without it, the
        # planner read an OU's oldest pending event by walking pk_events through every scored event whenever its
        # statistics counted pending events spread over the table (1 s per scoring batch after a decay pass).
        Index("ix_events_pending", "id", postgresql_where=text("status = 0"), sqlite_where=text("status = 0")),
        # Each OU's pending events in arrival order: scoring takes them round-robin across OUs (score_batch.py).
        Index(
            "ix_events_pending_unit",
            "unit_id",
            "id",
            postgresql_where=text("status = 0"),
            sqlite_where=text("status = 0"),
        ),
        # A lead's events in time order, with their type: the ledger and the history read a busy lead's events from
        # the index alone (docs/explanations.md).
        Index("ix_events_lead_time", "lead_pk", "occurred_at", "id", postgresql_include=["event_type"]),
        Index(
            "ix_events_pending_lead",
            "lead_pk",
            "occurred_at",
            "id",
            postgresql_where=text("status = 0"),
            sqlite_where=text("status = 0"),
        ),
        Index("ix_events_unit_time", "unit_id", "occurred_at"),
        Index(
            "uq_events_unit_idempotency",
            "unit_id",
            "idempotency_key",
            unique=True,
            postgresql_where=text("idempotency_key IS NOT NULL"),
            sqlite_where=text("idempotency_key IS NOT NULL"),
        ),
    )
    id: Mapped[int] = mapped_column(BIGID, primary_key=True, autoincrement=True)
    # No foreign keys on org_id/unit_id: the lead (whose own keys cascade from its OU) already ties an event to its
    # tenant, and two more checks per inserted row cost ingest ~10% of PostgreSQL's time.
    org_id: Mapped[str] = mapped_column(String(36))
    unit_id: Mapped[str] = mapped_column(String(36))
    lead_pk: Mapped[int] = mapped_column(ForeignKey("leads.pk", ondelete="CASCADE"))
    event_type: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    metadata_: Mapped[dict] = mapped_column("metadata", JSONType, default=dict)
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[int] = mapped_column(SmallInteger, default=PENDING)
    suppressed_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    scored_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    quiet: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # imported with skip_triggers


class ScoreDelta(Base):
    """What one event did to one ruleset's score: the basis of explanations and top drivers."""

    __tablename__ = "score_deltas"
    # Covering (PostgreSQL): a lead's ledger and history read its deltas from the index alone, not from heap pages
    # scattered over the table as they arrived (docs/explanations.md).
    __table_args__ = (
        Index(
            "ix_score_deltas_lead",
            "lead_pk",
            "ruleset_id",
            postgresql_include=["event_id", "rule_id", "delta", "score_after"],
        ),
    )
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
    ruleset_id: Mapped[str] = mapped_column(ForeignKey("rulesets.id", ondelete="CASCADE"), primary_key=True)
    lead_pk: Mapped[int] = mapped_column(ForeignKey("leads.pk", ondelete="CASCADE"))
    rule_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    delta: Mapped[int] = mapped_column(BigInteger)
    score_after: Mapped[int] = mapped_column(BigInteger)
