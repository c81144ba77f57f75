"""Reads of an OU's level table that the level history, HubSpot's engagement_level options and the console need."""

from __future__ import annotations

from sqlalchemy import and_, func, select, true

from models.leads import Lead
from models.levels import EngagementLevel, LevelHistory
from models.unit_context import level_specs


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


def level_table_version(session, unit_id: str) -> str | None:
    """The newest entry of the OU's level history: every change of the table records one, so it tells a table back to
    an earlier state (a revert) from that state's first time."""
    return session.execute(
        select(LevelHistory.id)
        .where(LevelHistory.unit_id == unit_id)
        .order_by(LevelHistory.created_at.desc(), LevelHistory.id.desc())
        .limit(1)
    ).scalar()


def in_range(score, low: int | None, high: int | None):
    """low <= score <= high, an unbounded side (None) left out."""
    return and_(true(), *([score >= low] if low is not None else []), *([score <= high] if high is not None else []))


def level_counts(session, unit_id: str) -> dict[str | None, int]:
    """How many of the OU's leads (merged ones left out) each level holds; None: those no level holds. Counted by the
    levels' score ranges in one pass, as the level filter of GET /leads reads them (models/lead_ops.py)."""
    levels = level_specs(session, unit_id)
    row = session.execute(
        select(*(func.count().filter(in_range(Lead.score, lv.min_score, lv.max_score)) for lv in levels), func.count())
        .select_from(Lead)
        .where(Lead.unit_id == unit_id, Lead.merged_into.is_(None))
    ).one()
    *held, total = row
    counts: dict[str | None, int] = {lv.id: n for lv, n in zip(levels, held) if n}
    if total > sum(held):
        counts[None] = total - sum(held)
    return counts
