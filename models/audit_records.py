"""Writing, filtering and pruning the audit log (what goes in and who sees it: docs/audit-log.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, or_, select
from sqlalchemy.orm import Session

from models.audit import AuditLog
from models.base import utcnow
from models.tenancy import ApiCredential, Member, Membership

SORTABLE = {
    "created_at": AuditLog.created_at,
    "user_email": AuditLog.user_email,
    "method": AuditLog.method,
    "path": AuditLog.path,
    "status": AuditLog.status,
    "ip": AuditLog.ip,
    "latency_ms": AuditLog.latency_ms,
}
SEARCHED = (AuditLog.user_email, AuditLog.path, AuditLog.ip)


@dataclass(frozen=True)
class AuditEntry:
    """One answered request as plain values: who (a member, a credential, or an email nobody vouched for), what, how."""

    method: str
    path: str
    status: int
    latency_ms: float
    ip: str | None = None
    org_id: str | None = None
    unit_id: str | None = None
    member_id: str | None = None
    user_email: str | None = None
    credential_id: str | None = None


def storable(text: str | None, limit: int) -> str | None:
    """Text PostgreSQL stores whatever a caller sent: no NUL, no lone surrogate, cut to the column's size."""
    if text is None:
        return None
    return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")[:limit]


def write_entry(session: Session, entry: AuditEntry, now: datetime | None = None) -> int:
    """The entry's rows in the session's transaction; how many. Under the caller's OU; a member acting with no OU
    selected (logging in, creating or picking one) under each OU they belong to, so those OUs' Owners see it; a caller
    nobody vouched for (a failed login) under none: kept for the operator, shown to nobody."""
    row = dict(
        created_at=now or utcnow(),
        org_id=entry.org_id,
        member_id=entry.member_id,
        user_email=storable(entry.user_email, 320),
        credential_id=entry.credential_id,
        method=storable(entry.method, 10),
        path=storable(entry.path, 500),
        status=entry.status,
        ip=storable(entry.ip, 45),
        latency_ms=round(entry.latency_ms, 1),
    )
    # Who the ids are, read by the INSERT itself: no round trip, and nothing added to authenticating every request.
    if entry.member_id and entry.user_email is None:
        row["user_email"] = select(Member.email).where(Member.id == entry.member_id).scalar_subquery()
    if entry.credential_id:
        cred = ApiCredential.id == entry.credential_id
        row["client_id"] = select(ApiCredential.client_id).where(cred).scalar_subquery()
        row["credential_name"] = select(ApiCredential.name).where(cred).scalar_subquery()
    units = [entry.unit_id]
    if entry.member_id and entry.unit_id is None:
        units = session.execute(
            select(Membership.unit_id).where(Membership.member_id == entry.member_id).order_by(Membership.unit_id)
        ).scalars().all() or [None]
    for unit_id in units:
        session.execute(insert(AuditLog).values(**row, unit_id=unit_id))
    return len(units)


def filtered(stmt, filters: dict):
    """stmt (the OU's entries) narrowed by the list's filters; search is a case-insensitive substring of the email,
    path or IP address, its % and _ taken literally."""
    if "method" in filters:
        stmt = stmt.where(AuditLog.method == filters["method"])
    if "status_min" in filters:
        stmt = stmt.where(AuditLog.status >= filters["status_min"])
    if "status_max" in filters:
        stmt = stmt.where(AuditLog.status <= filters["status_max"])
    if "user_email" in filters:
        stmt = stmt.where(AuditLog.user_email == filters["user_email"].strip().lower())  # stored lowercased
    if filters.get("search"):
        term = filters["search"]
        stmt = stmt.where(or_(*(column.icontains(term, autoescape=True) for column in SEARCHED)))
    return stmt


def ordering(sort_by: str, sort_order: str) -> tuple:
    """ORDER BY for a sortable column, newest id breaking ties so that pages never overlap; NULLs (no email, no
    address) last either way, on both backends."""
    column = SORTABLE[sort_by]
    if sort_order == "ASC":
        return column.asc().nulls_last(), AuditLog.id.asc()
    return column.desc().nulls_last(), AuditLog.id.desc()


def prune(session: Session, before: datetime, batch: int) -> int:
    """Delete up to batch entries created before `before`, oldest first; how many went."""
    oldest = select(AuditLog.id).where(AuditLog.created_at < before).order_by(AuditLog.id).limit(batch)
    return session.execute(delete(AuditLog).where(AuditLog.id.in_(oldest))).rowcount
