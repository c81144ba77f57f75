"""Set-based rewrites of an OU's leads after configuration changes: primary score and level."""

from __future__ import annotations

from sqlalchemy import func, insert, literal, or_, select, text, update
from sqlalchemy.orm import Session

from models.base import UTCDateTime, utcnow
from models.leads import Lead
from models.level_rules import classify
from models.levels import EngagementLevel, LeadLevelChange
from models.locks import lock_unit_leads
from models.scoring import LeadScore, Ruleset
from models.unit_context import level_specs


def _level_for_score(exclude_level_id: str | None = None):
    """Correlated subquery: the level whose inclusive range holds leads.score."""
    lv = EngagementLevel
    return (
        select(lv.id)
        .where(
            lv.unit_id == Lead.unit_id,
            lv.min_score <= Lead.score,
            or_(lv.max_score.is_(None), Lead.score <= lv.max_score),
            lv.id != (exclude_level_id or ""),
        )
        .order_by(lv.min_score)
        .limit(1)
        .scalar_subquery()
    )


def reclassify_unit(
    session: Session, unit_id: str, cause: str = "reconfiguration", exclude_level_id: str | None = None
) -> int:
    """Move every lead of the OU to the level its score now falls in; record each move. Returns moves.

    exclude_level_id reclassifies as if that level were already gone (before deleting it).
    """
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        # One statement, one snapshot. It locks only the leads it moves: the caller holds the OU's exclusive lock
        # (models/locks.lock_unit), so no scoring batch changes a score or level meanwhile; a lead changed by
        # anything else between the snapshot and its update is re-checked and left alone if its level moved.
        return session.execute(
            RECLASSIFY_PG, {"u": unit_id, "cause": cause, "now": now, "x": exclude_level_id or ""}
        ).scalar_one()
    new_level = _level_for_score(exclude_level_id)  # SQLite: writers are serialized, two statements suffice
    moved = Lead.unit_id == unit_id, Lead.merged_into.is_(None), Lead.level_id.is_distinct_from(new_level)
    session.execute(
        insert(LeadLevelChange).from_select(
            ["unit_id", "lead_pk", "from_level_id", "to_level_id", "score", "cause", "changed_at"],
            select(
                literal(unit_id),
                Lead.pk,
                Lead.level_id,
                new_level,
                Lead.score,
                literal(cause),
                literal(now, UTCDateTime),
            ).where(*moved),
        )
    )
    result = session.execute(
        update(Lead)
        .where(*moved)
        .values(level_id=new_level, level_changed_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


RECLASSIFY_PG = text("""
WITH lv AS MATERIALIZED (
    SELECT id, min_score, max_score FROM engagement_levels WHERE unit_id = :u AND id <> :x
), target AS (
    SELECT l.pk, l.score, l.level_id AS old_level, lv.id AS new_level
      FROM leads l LEFT JOIN lv ON lv.min_score <= l.score AND (lv.max_score IS NULL OR l.score <= lv.max_score)
     WHERE l.unit_id = :u AND l.merged_into IS NULL AND l.level_id IS DISTINCT FROM lv.id
), moved AS (
    UPDATE leads SET level_id = t.new_level, level_changed_at = :now
      FROM target t
     WHERE leads.pk = t.pk AND leads.level_id IS NOT DISTINCT FROM t.old_level
    RETURNING leads.pk, t.old_level, t.new_level, t.score
), recorded AS (
    INSERT INTO lead_level_changes (unit_id, lead_pk, from_level_id, to_level_id, score, cause, changed_at)
    SELECT :u, pk, old_level, new_level, score, :cause, :now FROM moved
    RETURNING 1
)
SELECT count(*) FROM recorded
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
