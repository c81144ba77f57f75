"""What the sample data created, so wiping it removes exactly that and nothing of the OU's own."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class SeedRecord(Base):
    """What POST /admin/seed (or `leadpulse demo`) created, so wipe-seed removes exactly that."""

    __tablename__ = "seed_records"
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10), primary_key=True)  # "level", "ruleset" or "lead"
    record_id: Mapped[str] = mapped_column(String(200), primary_key=True)  # an id, or a lead_id
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
