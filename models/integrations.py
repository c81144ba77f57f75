"""Per-OU integration settings: the HubSpot connection (token encrypted) and its sync status."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text, select, update
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
    # engagement_level's options follow the level table: a level change bumps `wanted` (in its own
    # transaction, an outbox), a job brings HubSpot up to date and records the version it sent.
    options_wanted: Mapped[int] = mapped_column(Integer, default=1)
    options_synced: Mapped[int] = mapped_column(Integer, default=0)


def request_options_sync(session, unit_id: str) -> None:
    """Mark the OU's HubSpot level options stale, in the caller's transaction."""
    session.execute(
        update(HubSpotConnection).where(HubSpotConnection.unit_id == unit_id)
        .values(options_wanted=HubSpotConnection.options_wanted + 1).execution_options(synchronize_session=False)
    )


def stale_option_units(session) -> list[str]:
    return list(session.execute(
        select(HubSpotConnection.unit_id).where(HubSpotConnection.options_synced < HubSpotConnection.options_wanted)
    ).scalars())
