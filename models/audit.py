"""The audit log: one row per mutating request (who, which path, how it ended), never a body, a query or a secret.

No foreign keys: an entry outlives the member, credential or OU it names, and a concurrent delete of one never refuses
the write (docs/audit-log.md).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, UTCDateTime, utcnow


class AuditLog(Base):
    __tablename__ = "audit_logs"
    __table_args__ = (Index("ix_audit_logs_unit_time", "unit_id", "created_at"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)  # the index: pruning
    org_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    unit_id: Mapped[str | None] = mapped_column(
        String(36), nullable=True
    )  # None: shown to nobody, kept for the operator
    member_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    user_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    credential_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    client_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    credential_name: Mapped[str | None] = mapped_column(String(50), nullable=True)
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    status: Mapped[int] = mapped_column(SmallInteger)
    ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    latency_ms: Mapped[float] = mapped_column(Float)
