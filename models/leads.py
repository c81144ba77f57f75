"""Leads and their aliases; a lead is identified by lead_id or by any alias within its OU."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, UTCDateTime, prefix_index, utcnow

ALIAS_KINDS = ("email", "phone", "external_id", "cookie", "social")
FILLFACTOR = 45  # percent of a page new rows fill: room for one more version of each (PostgreSQL; migration 0022)
DECAY_FILLFACTOR = 50  # the same for lead_decay's narrow rows (migration 0028)


class Lead(Base):
    __tablename__ = "leads"
    __table_args__ = (
        UniqueConstraint("unit_id", "lead_id"),
        # The Leads page's keyset orders (models/lead_ops.py KEYSET_SORTS), scanned forwards or backwards: a page
        # deep in a million leads is read from the index, not sorted (ix_leads_unit_activity below).
        Index("ix_leads_unit_score", "unit_id", "score", "lead_id"),
        prefix_index("ix_leads_unit_id_prefix", "lead_id", "pk"),  # the search by id prefix (models/base.py)
        # level_id is in no index and has no foreign key, and every page keeps room for a second version of its
        # rows: a level edit that moves every lead rewrites each one in place (a HOT update), docs/levels.md.
        {"postgresql_with": {"fillfactor": FILLFACTOR}},
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
    # The level whose range holds the score (None: Unclassified). Not a foreign key: every deletion of a level moves
    # its leads out first (models/reclassify.py), which is what ON DELETE SET NULL did, without a check per move.
    level_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    level_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_event_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_event_type: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # (occurred_at, id) of the last event applied: a pending event sorting before it forces a replay.
    scored_through_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    scored_through_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# By last activity, newest first, a lead with none last (NULL as the lowest value: SQLite's order, which its plain index
# of the migration keeps; PostgreSQL is told).
Index("ix_leads_unit_activity", Lead.unit_id, Lead.last_event_at.desc().nulls_last(), Lead.lead_id.desc())


class LeadDecay(Base):
    """A lead's decay bookkeeping (models/decay_pass.py), in a narrow row of its own that a pass and scoring rewrite in
    place: only columns that never change are indexed, and pages keep room, so most rewrites are HOT updates."""

    __tablename__ = "lead_decay"
    # The due time is in no index: a pass reads the rows in key order and keeps the due ones (~0.2 s per million
    # leads), where an index on it made every rewrite insert two index entries (docs/scoring.md, "Cost"). By OU and
    # key: a pass of one OU, and a rule edit's reschedule, read that OU's rows only.
    __table_args__ = (
        Index("ix_lead_decay_unit", "unit_id", "lead_pk"),
        {"postgresql_with": {"fillfactor": DECAY_FILLFACTOR}},
    )
    lead_pk: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("leads.pk", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )
    unit_id: Mapped[str] = mapped_column(String(36))  # the lead's, for a pass of one OU; the lead ties it to its OU
    anchor_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # the last activity counted from
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # periods up to here were applied
    # When the next period ends; None: look now (scoring clears it when the lead's last activity changes).
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class LeadAlias(Base):
    __tablename__ = "lead_aliases"
    __table_args__ = (
        UniqueConstraint("unit_id", "kind", "value"),
        prefix_index("ix_lead_aliases_unit_prefix", "value", "lead_pk"),
    )
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"))
    lead_pk: Mapped[int] = mapped_column(ForeignKey("leads.pk", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    value: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


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
