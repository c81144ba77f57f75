"""Slack: the organization's app, per OU the install (slack-sdk's stores on our database), the alert target and
settings, and the alert outbox."""

from __future__ import annotations

from datetime import datetime

from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, JSONType, UTCDateTime, utcnow
from models.events import BIGID

# slack-sdk's own tables, declared on our metadata so Alembic creates them; token columns are Text
# because integrations/slack_store.py stores them Fernet-encrypted (longer than Slack's 200).
TOKEN_COLUMNS = ("bot_token", "bot_refresh_token", "user_token", "user_refresh_token")
SLACK_INSTALLATIONS = SQLAlchemyInstallationStore.build_installations_table(Base.metadata, "slack_installations")
SLACK_BOTS = SQLAlchemyInstallationStore.build_bots_table(Base.metadata, "slack_bots")
SLACK_OAUTH_STATES = SQLAlchemyOAuthStateStore.build_oauth_states_table(Base.metadata, "slack_oauth_states")
for _table in (SLACK_INSTALLATIONS, SLACK_BOTS):
    for _name in TOKEN_COLUMNS:
        if _name in _table.c:
            _table.c[_name].type = Text()


class SlackApp(Base):
    """The organization's Slack app credentials (for OAuth installs); the client secret is encrypted."""

    __tablename__ = "slack_apps"
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(100))
    client_secret_encrypted: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SlackConnection(Base):
    """Which workspace an OU installed into and where its alerts go (the token lives in slack_bots)."""

    __tablename__ = "slack_connections"
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), primary_key=True)
    client_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    enterprise_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    team_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    team_name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    bot_user_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    installed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    target_kind: Mapped[str | None] = mapped_column(String(10), nullable=True)
    target_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SlackInstallRequest(Base):
    """Which OU (and member) asked for the install a single-use OAuth state stands for."""

    __tablename__ = "slack_install_requests"
    state: Mapped[str] = mapped_column(String(200), primary_key=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"))
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    member_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AlertSettings(Base):
    """Which level entries alert, how often per lead, and whether reconfiguration sends one digest."""

    __tablename__ = "alert_settings"
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"), primary_key=True)
    alert_min_level_id: Mapped[str | None] = mapped_column(
        ForeignKey("engagement_levels.id", ondelete="SET NULL"), nullable=True
    )
    cooldown_hours: Mapped[int] = mapped_column(Integer, default=24)
    digest_on_reclassification: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# Alert rows: one per level entry (key "change:<id>") or digest; `status` moves pending -> posting -> sent | failed,
# or is settled at once as suppressed (cooldown) or summarized (folded into a catch-up digest). "posting" is
# committed before chat.postMessage: a row found in it may have reached Slack, and is looked up in the channel
# before it is posted again (integrations/slack_alerts.py).
PENDING, POSTING, SENT, FAILED, SUPPRESSED, SUMMARIZED = (
    "pending",
    "posting",
    "sent",
    "failed",
    "suppressed",
    "summarized",
)
UNSENT = (PENDING, POSTING)  # what delivery still has to settle


class SlackAlert(Base):
    __tablename__ = "slack_alerts"
    __table_args__ = (
        Index(
            "ix_slack_alerts_pending",
            "unit_id",
            "id",
            postgresql_where=text("status IN ('pending', 'posting')"),
            sqlite_where=text("status IN ('pending', 'posting')"),
        ),
        Index("ix_slack_alerts_lead_time", "lead_pk", "created_at"),
    )
    id: Mapped[int] = mapped_column(BIGID, primary_key=True, autoincrement=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("org_units.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(120), unique=True)  # the level entry (or digest) it announces
    kind: Mapped[str] = mapped_column(String(10))  # "lead" or "digest"
    lead_pk: Mapped[int | None] = mapped_column(ForeignKey("leads.pk", ondelete="CASCADE"), nullable=True)
    level_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    score: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    payload: Mapped[dict] = mapped_column(JSONType, default=dict)
    status: Mapped[str] = mapped_column(String(12), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    event_received_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # for the latency metric
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    posting_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # the last post attempt began
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    channel: Mapped[str | None] = mapped_column(String(40), nullable=True)
    ts: Mapped[str | None] = mapped_column(String(40), nullable=True)
    text_: Mapped[str | None] = mapped_column("text", Text, nullable=True)
