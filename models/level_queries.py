"""Reads of an OU's level table that the level history, HubSpot's engagement_level options and the console need."""

from __future__ import annotations

from sqlalchemy import func, select

from models.leads import Lead
from models.levels import EngagementLevel


def level_snapshot(session, unit_id: str) -> list[dict]:
    """The whole level table, as level history stores it."""
    rows = session.execute(
        select(EngagementLevel)
        .where(EngagementLevel.unit_id == unit_id)
        .order_by(EngagementLevel.order, EngagementLevel.min_score)
    ).scalars()
    return [
        {
            "id": lv.id,
            "name": lv.name,
            "min_score": lv.min_score,
            "max_score": lv.max_score,
            "color": lv.color,
            "order": lv.order,
        }
        for lv in rows
    ]


def level_options(session, unit_id: str) -> tuple[list[str], set[str]]:
    """The OU's level names by score, and the names other OUs use: OUs may share a HubSpot portal, whose
    engagement_level options must then keep the others' values (else their contacts' updates are refused)."""
    names = list(
        session.execute(
            select(EngagementLevel.name).where(EngagementLevel.unit_id == unit_id).order_by(EngagementLevel.min_score)
        ).scalars()
    )
    others = set(
        session.execute(select(EngagementLevel.name).where(EngagementLevel.unit_id != unit_id).distinct()).scalars()
    )
    return names, others


def level_counts(session, unit_id: str) -> dict[str | None, int]:
    """How many of the OU's leads (merged ones left out) each level holds; None: those no level holds."""
    rows = session.execute(
        select(Lead.level_id, func.count())
        .where(Lead.unit_id == unit_id, Lead.merged_into.is_(None))
        .group_by(Lead.level_id)
    ).all()
    return {level_id: count for level_id, count in rows}
