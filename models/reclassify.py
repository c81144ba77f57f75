"""Set-based rewrites of an OU's leads after configuration changes: primary score and level."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import case, func, insert, literal, null, select, update
from sqlalchemy.orm import Session

from models.base import UTCDateTime, utcnow
from models.leads import Lead
from models.level_queries import in_range
from models.level_rules import classify
from models.levels import LeadLevelChange
from models.locks import lock_unit_leads
from models.scoring import LeadScore, Ruleset
from models.unit_context import level_specs


def level_of_score(levels):
    """The level whose inclusive range holds leads.score, as one CASE over the OU's few levels (None: Unclassified):
    evaluated in the row, no lookup per lead."""
    if not levels:
        return null()
    return case(*((in_range(Lead.score, lv.min_score, lv.max_score), literal(lv.id)) for lv in levels), else_=null())


def reclassify_unit(
    session: Session, unit_id: str, cause: str = "reconfiguration", exclude_level_ids: Collection[str] = ()
) -> int:
    """Move every lead of the OU to the level its score now falls in; record the moves, one row per (from level, to
    level) with their score range and count (docs/levels.md). Returns moves.

    exclude_level_ids reclassifies as if those levels were already gone (before deleting them).
    """
    now = utcnow()
    levels = [lv for lv in level_specs(session, unit_id) if lv.id not in set(exclude_level_ids)]
    new_level = level_of_score(levels)
    wrong = Lead.unit_id == unit_id, Lead.merged_into.is_(None), Lead.level_id.is_distinct_from(new_level)
    moves = select(Lead.level_id.label("old"), new_level.label("new"), Lead.score).where(*wrong).subquery()
    record = insert(LeadLevelChange).from_select(
        ["unit_id", "from_level_id", "to_level_id", "score", "max_score", "leads", "cause", "changed_at"],
        select(
            literal(unit_id),
            moves.c.old,
            moves.c.new,
            func.min(moves.c.score),
            func.max(moves.c.score),
            func.count(),
            literal(cause),
            literal(now, UTCDateTime),
        ).group_by(moves.c.old, moves.c.new),
        include_defaults=False,  # the columns' server defaults (not yet alert-checked) stand
    )
    move = (
        update(Lead)
        .where(*wrong)
        .values(level_id=new_level, level_changed_at=now)
        .execution_options(synchronize_session=False)
    )
    if session.get_bind().dialect.name != "postgresql":  # SQLite: writers are serialized, two statements suffice
        session.execute(record)
        return session.execute(move).rowcount
    # One statement, one snapshot: the moves are counted from the rows as they were, and each lead is rewritten in
    # place (a HOT update, models/leads.py) by one pass over the OU's leads, no join. It locks only the leads it moves:
    # the caller holds the OU's exclusive lock (models/locks.lock_unit), so no scoring batch changes a score or level
    # meanwhile; a lead changed by anything else before its update is re-checked, and left alone if now in its level.
    moved = move.returning(Lead.pk).cte("moved")
    return session.execute(select(func.count()).select_from(moved).add_cte(record.cte("recorded"))).scalar_one()


def classify_new_lead(session: Session, lead: Lead) -> None:
    """Give a lead created outside scoring (POST /leads) the level its score falls in, recorded like any move."""

    level = classify(lead.score, level_specs(session, lead.unit_id))
    if level is not None and level.id != lead.level_id:
        session.flush()
        now = utcnow()
        session.add(
            LeadLevelChange(
                unit_id=lead.unit_id,
                lead_pk=lead.pk,
                from_level_id=lead.level_id,
                to_level_id=level.id,
                score=lead.score,
                cause="score",
                changed_at=now,
            )
        )
        lead.level_id, lead.level_changed_at = level.id, now


def refresh_primary_scores(session: Session, unit_id: str) -> int:
    """Copy the primary ruleset's score onto every lead (0 without a primary), then reclassify."""
    lock_unit_leads(session, unit_id)
    primary = session.execute(
        select(Ruleset.id).where(Ruleset.unit_id == unit_id, Ruleset.is_primary.is_(True))
    ).scalar()
    if primary is None:
        score = literal(0)
    else:
        score = func.coalesce(
            select(LeadScore.score)
            .where(LeadScore.lead_pk == Lead.pk, LeadScore.ruleset_id == primary)
            .scalar_subquery(),
            0,
        )
    session.execute(
        update(Lead).where(Lead.unit_id == unit_id).values(score=score).execution_options(synchronize_session=False)
    )
    return reclassify_unit(session, unit_id)
