"""Inbound webhook sources: Standard Webhooks sources keep their signing secret encrypted (HMAC needs it back);
Segment sources keep only a hash of their write key (it is compared, never used to sign)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, new_id, utcnow


class WebhookSource(Base):
    __tablename__ = "webhook_sources"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str | None] = mapped_column(String(500), nullable=True)
    kind: Mapped[str] = mapped_column(String(20), default="standard")  # "standard" or "segment"
    secret_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    write_key_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class HubSpotWebhookEvent(Base):
    """eventIds of HubSpot webhook events already applied: HubSpot retries deliveries, each event counts once."""

    __tablename__ = "hubspot_webhook_events"
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class HubSpotPendingCreation(Base):
    """Contacts HubSpot announced (contact.creation) while no token served the OU: linked to leads once one does."""

    __tablename__ = "hubspot_pending_creations"
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), primary_key=True)
    hubspot_id: Mapped[str] = mapped_column(String(20), primary_key=True)
    portal_id: Mapped[str | None] = mapped_column(String(20), nullable=True)  # the sender's portal, when it said
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def pending_creations(session, unit_id: str, limit: int) -> list[HubSpotPendingCreation]:
    """The OU's oldest waiting contact creations."""
    return list(session.execute(select(HubSpotPendingCreation).where(HubSpotPendingCreation.unit_id == unit_id)
                                .order_by(HubSpotPendingCreation.received_at, HubSpotPendingCreation.hubspot_id)
                                .limit(limit)).scalars())
