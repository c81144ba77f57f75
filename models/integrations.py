"""Per-OU integration settings: the HubSpot connection (token encrypted) and its sync status."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class HubSpotConnection(Base):
    __tablename__ = "hubspot_connections"
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), primary_key=True)
    token_encrypted: Mapped[str] = mapped_column(Text)
    portal_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    properties_ready: Mapped[bool] = mapped_column(Boolean, default=False)
    create_missing_contacts: Mapped[bool] = mapped_column(Boolean, default=False)
    connected_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
