"""Who a lead is: its aliases, one spelling per identity, and the primary email every part of LeadPulse shows."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.leads import Lead, LeadAlias


def primary_email():
    """Correlated subquery: the lead's primary email, its oldest email alias (lowest id on a tie), so it stays put."""
    return (
        select(LeadAlias.value)
        .where(LeadAlias.lead_pk == Lead.pk, LeadAlias.kind == "email")
        .order_by(LeadAlias.created_at, LeadAlias.id)
        .limit(1)
        .scalar_subquery()
    )


def primary_emails(session: Session, lead_pks: list[int]) -> dict[int, str | None]:
    """The primary email of each of a page of leads, in one query."""
    if not lead_pks:
        return {}
    return dict(session.execute(select(Lead.pk, primary_email()).where(Lead.pk.in_(lead_pks))).all())


def aliases_of(session: Session, lead_pk: int) -> list[LeadAlias]:
    """A lead's aliases, oldest first (so its primary email is the first email listed)."""
    return list(
        session.execute(
            select(LeadAlias).where(LeadAlias.lead_pk == lead_pk).order_by(LeadAlias.created_at, LeadAlias.id)
        ).scalars()
    )


def normalize_alias(kind: str, raw: str) -> str:
    """One spelling per identity, so 'Ada@X.com ' and 'ada@x.com' find the same lead."""
    value = raw.strip()
    if kind == "email":
        return value.lower()
    if kind == "phone":
        keep = "".join(ch for ch in value if ch.isdigit() or ch == "+")
        return keep or value
    return value
