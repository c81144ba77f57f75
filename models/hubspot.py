"""HubSpot per OU: the connection (token encrypted), what each contact holds, and the webhook events received."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow

# A HubSpot property change of a linked contact is kept as an event of this type (never scored) for backtests'
# outcomes (models/backtest.py); a lifecycle stage is the change of this property.
PROPERTY_CHANGE = "contact.propertyChange"
LIFECYCLE_STAGE = "lifecyclestage"


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


class HubSpotContact(Base):
    """What HubSpot holds for a lead: its contact id and the values last written (or last refused)."""

    __tablename__ = "hubspot_contacts"
    lead_pk: Mapped[int] = mapped_column(ForeignKey("leads.pk", ondelete="CASCADE"), primary_key=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), index=True)
    hubspot_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    synced_score: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The level's name, the value HubSpot holds (its id would not show that a rename left the contact stale).
    synced_level: Mapped[str | None] = mapped_column(String(100), nullable=True)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # A refused write is not retried for the same values; any later change of the lead retries it.
    failed_score: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    failed_level: Mapped[str | None] = mapped_column(String(100), nullable=True)
    failure: Mapped[str | None] = mapped_column(String(500), nullable=True)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


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
