"""What the lead endpoints do in the database: the filtered list, search, create, scores by ruleset, a lead's level and
its activity (merging is models/merge.py, deleting models/lead_delete.py)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from sqlalchemy import and_, false, or_, select
from sqlalchemy.orm import Session

from models.base import utcnow
from models.dialect import insert_for
from models.event_queries import EVENT_COLUMNS, NEWEST_FIRST
from models.events import Event, ScoreDelta
from models.keyset import Key
from models.leads import Lead, LeadAlias
from models.level_queries import in_range
from models.level_rules import unclassified_ranges
from models.levels import EngagementLevel
from models.reclassify import classify_new_lead
from models.scoring import LeadScore, Ruleset
from models.time_ranges import range_start
from models.unit_context import level_specs

SORTS = {
    "score": (Lead.score.asc(), Lead.lead_id),
    "-score": (Lead.score.desc(), Lead.lead_id),
    "last_event_at": (Lead.last_event_at.asc(), Lead.lead_id),
    "-last_event_at": (Lead.last_event_at.desc(), Lead.lead_id),
    "created_at": (Lead.created_at.asc(), Lead.lead_id),
    "-created_at": (Lead.created_at.desc(), Lead.lead_id),
    "lead_id": (Lead.lead_id,),
}
# The console's keyset orders (models/keyset.py), each served by an index in either direction (models/leads.py): ties
# by lead id in the sort's direction; a lead with no activity yet is the least recently active.
KEYSET_SORTS = {
    "-score": (Key(Lead.score, True, int), Key(Lead.lead_id, True, str)),
    "score": (Key(Lead.score, False, int), Key(Lead.lead_id, False, str)),
    "-last_event_at": (Key(Lead.last_event_at, True, datetime, nullable=True), Key(Lead.lead_id, True, str)),
    "last_event_at": (Key(Lead.last_event_at, False, datetime, nullable=True), Key(Lead.lead_id, False, str)),
}
LIST_COLUMNS = (
    Lead.pk,
    Lead.org_id,
    Lead.unit_id,
    Lead.lead_id,
    Lead.score,
    Lead.last_event_at,
    Lead.created_at,
    Lead.updated_at,
    Lead.owner_name,
    Lead.level_id,
    EngagementLevel.name.label("level_name"),
    EngagementLevel.color.label("level_color"),
)
ACTIVITY_LIMIT = 500


class UnknownLevel(LookupError):
    """A level filter naming no level of the OU."""


class UnknownRuleset(LookupError):
    """A ruleset asked for by id or name that the OU does not have."""


def list_statement(session: Session, unit_id: str, filters: dict, now: datetime):
    """The OU's unmerged leads (LIST_COLUMNS) with the list's filters; the caller orders it by SORTS and pages it."""
    stmt = (
        select(*LIST_COLUMNS)
        .outerjoin(EngagementLevel, EngagementLevel.id == Lead.level_id)
        .where(Lead.unit_id == unit_id, Lead.merged_into.is_(None))
    )
    if "min_score" in filters:
        stmt = stmt.where(Lead.score >= filters["min_score"])
    if "max_score" in filters:
        stmt = stmt.where(Lead.score <= filters["max_score"])
    if "event_type" in filters:
        stmt = stmt.where(Lead.last_event_type == filters["event_type"])
    if filters.get("last_active") in ("7d", "30d"):
        stmt = stmt.where(Lead.last_event_at >= now - timedelta(days=int(filters["last_active"][:-1])))
    if "range" in filters:
        start, end = range_start(filters["range"], now)
        if start is not None:
            stmt = stmt.where(Lead.created_at >= start)
        if end is not None:
            stmt = stmt.where(Lead.created_at < end)
    if "level" in filters:
        stmt = stmt.where(_level_filter(session, unit_id, filters["level"]))
    if filters.get("q"):
        stmt = stmt.where(_matching(session, unit_id, filters["q"]))
    return stmt


def _level_filter(session: Session, unit_id: str, value: str):
    """The leads a level holds, as the score range it is (a level is exactly its range once the leads are classified,
    models/reclassify.py), read through the (unit, score) index; Unclassified: the scores no range holds."""
    levels = level_specs(session, unit_id)
    if value.lower() in ("none", "unclassified"):
        return or_(false(), *(in_range(Lead.score, lo, hi) for lo, hi in unclassified_ranges(levels)))
    level = next((lv for lv in levels if lv.id == value or lv.name.lower() == value.lower()), None)
    if level is None:
        raise UnknownLevel(value)
    return in_range(Lead.score, level.min_score, level.max_score)


def rulesets(session: Session, unit_id: str):
    """The OU's rulesets as (id, name, is_primary) rows."""
    return session.execute(select(Ruleset.id, Ruleset.name, Ruleset.is_primary).where(Ruleset.unit_id == unit_id)).all()


def scores_by_lead(session: Session, lead_pks: list[int]) -> dict[int, dict[str, int]]:
    """Each lead's score per ruleset id, for a page of leads in one query."""
    scores: dict[int, dict[str, int]] = defaultdict(dict)
    for s in session.execute(
        select(LeadScore.lead_pk, LeadScore.ruleset_id, LeadScore.score).where(LeadScore.lead_pk.in_(lead_pks))
    ):
        scores[s.lead_pk][s.ruleset_id] = s.score
    return scores


def _like_prefix(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _prefix_end(prefix: str) -> str | None:
    """The least string above every string that starts with prefix, in code point order (UTF-8's byte order); None
    when there is none."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        code = 0xE000 if code == 0xD800 else code  # no text holds a surrogate
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None


def _starts_with(session: Session, column, prefix: str):
    """column starts with prefix (LIKE, literally). On PostgreSQL also as the byte-order range an index with
    text_pattern_ops is read by: under a language collation a prefix LIKE is served by no index (docs/console.md)."""
    like = column.like(_like_prefix(prefix), escape="\\")
    if session.get_bind().dialect.name != "postgresql":
        return like
    end = _prefix_end(prefix)
    return and_(column.op("~>=~")(prefix), *([column.op("~<~")(end)] if end is not None else []), like)


MATCHES_LISTED = 5000  # up to this many leads match a search: read by key; more: dense enough to find in page order


def _matching(session: Session, unit_id: str, q: str):
    """Leads whose id, or any alias (stored lowercased), starts with q. Each side's matches are first read from its
    prefix index: up to MATCHES_LISTED they are leads the page reads by key (none: no read at all); past that they are
    dense enough that reading the page's own order and checking each lead finds a page within a few thousand."""
    by_id = _starts_with(session, Lead.lead_id, q)
    by_alias = _starts_with(session, LeadAlias.value, q.lower())

    def listed(stmt) -> list[int] | None:
        found = session.execute(stmt.limit(MATCHES_LISTED + 1)).scalars().all()
        return found if len(found) <= MATCHES_LISTED else None

    ids = listed(select(Lead.pk).where(Lead.unit_id == unit_id, by_id))
    aliases = listed(select(LeadAlias.lead_pk).where(LeadAlias.unit_id == unit_id, by_alias))
    if ids is not None and aliases is not None:
        return Lead.pk.in_(set(ids) | set(aliases))
    # A scalar subquery, not EXISTS: PostgreSQL would hash every matching alias first instead of asking per lead.
    alias_of_lead = select(LeadAlias.id).where(LeadAlias.lead_pk == Lead.pk, by_alias).limit(1).scalar_subquery()
    return or_(
        by_id if ids is None else Lead.pk.in_(ids),
        alias_of_lead.isnot(None) if aliases is None else Lead.pk.in_(aliases),
    )


def search(session: Session, unit_id: str, q: str, limit: int):
    """Unmerged leads whose id, or any alias, starts with q; highest score first."""
    return session.execute(
        select(Lead.lead_id, Lead.score, EngagementLevel.id, EngagementLevel.name, EngagementLevel.color)
        .outerjoin(EngagementLevel, EngagementLevel.id == Lead.level_id)
        .where(Lead.unit_id == unit_id, Lead.merged_into.is_(None), _matching(session, unit_id, q))
        .order_by(Lead.score.desc(), Lead.lead_id)
        .limit(limit)
    ).all()


def create_lead(
    session: Session, org_id: str, unit_id: str, lead_id: str, metadata: dict, account_id: str | None
) -> Lead | None:
    """The new lead, classified into its level; None when the OU has it already (perhaps just created by an ingest)."""
    now = utcnow()
    pk = session.execute(
        insert_for(session, Lead)
        .values(
            org_id=org_id,
            unit_id=unit_id,
            lead_id=lead_id,
            metadata=metadata,
            account_id=account_id,
            score=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["unit_id", "lead_id"])
        .returning(Lead.pk)
    ).scalar()
    if pk is None:
        return None
    lead = session.get(Lead, pk)
    classify_new_lead(session, lead)
    return lead


def level_of(session: Session, lead: Lead) -> EngagementLevel | None:
    return session.get(EngagementLevel, lead.level_id) if lead.level_id is not None else None


def lead_score(session: Session, lead: Lead, ruleset_id: str | None) -> tuple[str, int, dict[str, int]]:
    """(ruleset id, score, scores by ruleset): the named ruleset's, else the primary's, else the highest, else ("", 0)."""
    by_id = {r.id: r for r in rulesets(session, lead.unit_id)}
    scores = dict(
        session.execute(select(LeadScore.ruleset_id, LeadScore.score).where(LeadScore.lead_pk == lead.pk)).all()
    )
    if ruleset_id is not None:
        if ruleset_id not in by_id:
            raise UnknownRuleset(ruleset_id)
        return ruleset_id, scores.get(ruleset_id, 0), scores
    primary = next((r.id for r in by_id.values() if r.is_primary), None)
    if primary:
        return primary, lead.score, scores
    if scores:
        return (*max(scores.items(), key=lambda kv: kv[1]), scores)
    return "", 0, scores


def batch_scores(
    session: Session, unit_id: str, lead_ids: list[str], ruleset: str
) -> tuple[str, list[tuple[str, int, bool]]]:
    """(ruleset id, [(lead id, score, found)]) for the ruleset named by id or name, or "primary"."""
    wanted = list(dict.fromkeys(lead_ids))
    all_rulesets = rulesets(session, unit_id)
    if ruleset == "primary":
        chosen = next((r for r in all_rulesets if r.is_primary), None)
    else:
        chosen = next((r for r in all_rulesets if ruleset in (r.id, r.name)), None)
        if chosen is None:
            raise UnknownRuleset(ruleset)
    leads = dict(
        session.execute(select(Lead.lead_id, Lead.pk).where(Lead.unit_id == unit_id, Lead.lead_id.in_(wanted))).all()
    )
    scores = {}
    if chosen and leads:
        scores = dict(
            session.execute(
                select(LeadScore.lead_pk, LeadScore.score).where(
                    LeadScore.ruleset_id == chosen.id, LeadScore.lead_pk.in_(list(leads.values()))
                )
            ).all()
        )
    return chosen.id if chosen else "", [(lid, scores.get(leads.get(lid), 0), lid in leads) for lid in wanted]


def activity(
    session: Session,
    lead: Lead,
    start: datetime | None,
    end: datetime | None,
    *,
    end_inclusive: bool,
    channel: str | None,
    has_delta: bool | None,
    min_delta: int | None,
    limit: int = ACTIVITY_LIMIT,
):
    """The lead's newest `limit` events (EVENT_COLUMNS and the delta each gave the primary score) in [start, end)."""
    primary = session.execute(
        select(Ruleset.id).where(Ruleset.unit_id == lead.unit_id, Ruleset.is_primary.is_(True))
    ).scalar()
    delta = (
        select(ScoreDelta.delta)
        .where(ScoreDelta.event_id == Event.id, ScoreDelta.ruleset_id == (primary or ""))
        .scalar_subquery()
    )
    stmt = (
        select(*EVENT_COLUMNS, delta.label("delta"))
        .join(Lead, Lead.pk == Event.lead_pk)
        .where(Event.lead_pk == lead.pk)
    )
    if start is not None:
        stmt = stmt.where(Event.occurred_at >= start)
    if end is not None:
        stmt = stmt.where(Event.occurred_at <= end if end_inclusive else Event.occurred_at < end)
    if channel is not None:
        stmt = stmt.where(Event.metadata_["channel"].as_string() == channel)
    if has_delta is True:
        stmt = stmt.where(delta.isnot(None))
    elif has_delta is False:
        stmt = stmt.where(delta.is_(None))
    if min_delta is not None:
        stmt = stmt.where(delta >= min_delta)
    return session.execute(stmt.order_by(*NEWEST_FIRST).limit(limit)).all()
