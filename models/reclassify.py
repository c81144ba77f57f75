"""Set-based rewrites of an OU's leads after configuration changes: primary score and level."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, insert, literal, or_, select, text, update
from sqlalchemy.orm import Session

from models.base import UTCDateTime, utcnow
from models.leads import Lead
from models.level_rules import classify
from models.levels import EngagementLevel, LeadLevelChange
from models.locks import lock_unit_leads
from models.scoring import LeadScore, Ruleset
from models.unit_context import level_specs


def _level_for_score(exclude_level_ids: Collection[str] = ()):
    """Correlated subquery: the level whose inclusive range holds leads.score."""
    lv = EngagementLevel
    return (
        select(lv.id)
        .where(
            lv.unit_id == Lead.unit_id,
            lv.min_score <= Lead.score,
            or_(lv.max_score.is_(None), Lead.score <= lv.max_score),
            lv.id.not_in(list(exclude_level_ids)),
        )
        .order_by(lv.min_score)
        .limit(1)
        .scalar_subquery()
    )


def reclassify_unit(
    session: Session, unit_id: str, cause: str = "reconfiguration", exclude_level_ids: Collection[str] = ()
) -> int:
    """Move every lead of the OU to the level its score now falls in; record the moves, one row per (from level, to
    level) with their score range and count. Returns moves.

    exclude_level_ids reclassifies as if those levels were already gone (before deleting them).
    """
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        # One statement, one snapshot. It locks only the leads it moves: the caller holds the OU's exclusive lock
        # (models/locks.lock_unit), so no scoring batch changes a score or level meanwhile; a lead changed by
        # anything else between the snapshot and its update is re-checked and left alone if its level moved.
        return session.execute(
            RECLASSIFY_PG, {"u": unit_id, "cause": cause, "now": now, "x": list(exclude_level_ids)}
        ).scalar_one()
    new_level = _level_for_score(exclude_level_ids)  # SQLite: writers are serialized, two statements suffice
    moved = Lead.unit_id == unit_id, Lead.merged_into.is_(None), Lead.level_id.is_distinct_from(new_level)
    moves = select(Lead.level_id.label("old"), new_level.label("new"), Lead.score).where(*moved).subquery()
    session.execute(
        insert(LeadLevelChange).from_select(
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
        )
    )
    result = session.execute(
        update(Lead)
        .where(*moved)
        .values(level_id=new_level, level_changed_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


# Each moved lead is rewritten in place (a HOT update: level_id is in no index and references nothing, and the pages
# keep room, models/leads.py); its move is counted into its (from, to) row, not written as a row of its own.
RECLASSIFY_PG = text("""
WITH lv AS MATERIALIZED (
    SELECT id, min_score, max_score FROM engagement_levels WHERE unit_id = :u AND id <> ALL(:x)
), target AS (
    SELECT l.pk, l.score, l.level_id AS old_level, lv.id AS new_level
      FROM leads l LEFT JOIN lv ON lv.min_score <= l.score AND (lv.max_score IS NULL OR l.score <= lv.max_score)
     WHERE l.unit_id = :u AND l.merged_into IS NULL AND l.level_id IS DISTINCT FROM lv.id
), moved AS (
    UPDATE leads SET level_id = t.new_level, level_changed_at = :now
      FROM target t
     WHERE leads.pk = t.pk AND leads.level_id IS NOT DISTINCT FROM t.old_level
    RETURNING t.old_level, t.new_level, t.score
), recorded AS (
    INSERT INTO lead_level_changes
           (unit_id, lead_pk, from_level_id, to_level_id, score, max_score, leads, cause, changed_at)
    SELECT :u, NULL, old_level, new_level, min(score), max(score), count(*), :cause, :now
      FROM moved GROUP BY old_level, new_level
    RETURNING leads
)
SELECT coalesce(sum(leads), 0)::int FROM recorded
""")


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
