"""The level and ruleset histories: who changed what and the whole table or rule set after it, and restoring an earlier
level table (docs/history.md)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from models.base import utcnow
from models.level_queries import level_snapshot
from models.levels import EngagementLevel, LevelHistory
from models.reclassify import reclassify_unit
from models.scoring import Ruleset, RulesetHistory
from models.tenancy import ApiCredential, Member

MEMBER, CREDENTIAL, SYSTEM = "member", "credential", "system"
LEVEL_FIELDS = ("name", "min_score", "max_score", "color", "order")


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a member or an API credential by id, or the system by name (the demo, sample data)."""

    kind: str
    id: str | None = None
    name: str | None = None


def _actor_columns(session: Session, actor: Actor) -> dict:
    """ActorColumns as the entry keeps them: a member's email and a credential's name as they are now."""
    name = actor.name
    if actor.kind == MEMBER:
        name = session.execute(select(Member.email).where(Member.id == actor.id)).scalar()
    elif actor.kind == CREDENTIAL:
        name = session.execute(select(ApiCredential.name).where(ApiCredential.id == actor.id)).scalar()
    return dict(actor=actor.id, actor_kind=actor.kind, actor_name=name)


def record_level_change(
    session: Session, unit_id: str, actor: Actor, action: str, reverted_from: str | None = None
) -> LevelHistory:
    """The history entry of a level table change, with the table as it now is (call it once the table is final)."""
    entry = LevelHistory(
        unit_id=unit_id,
        action=action,
        snapshot=level_snapshot(session, unit_id),
        reverted_from=reverted_from,
        created_at=utcnow(),
        **_actor_columns(session, actor),
    )
    session.add(entry)
    session.flush()
    return entry


def record_ruleset_change(session: Session, ruleset: Ruleset, actor: Actor, action: str) -> RulesetHistory:
    """The history entry of a publish or unpublish, with the rules the ruleset scored by (published, or withdrawn)."""
    entry = RulesetHistory(
        unit_id=ruleset.unit_id,
        ruleset_id=ruleset.id,
        ruleset_name=ruleset.name,
        action=action,
        snapshot=ruleset.published_rules or [],
        created_at=utcnow(),
        **_actor_columns(session, actor),
    )
    session.add(entry)
    session.flush()
    return entry


def restore_level_table(session: Session, org_id: str, unit_id: str, snapshot: list[dict]) -> int:
    """Make the OU's level table the snapshot's (same ids, so alert settings and leads keep theirs) and move every lead
    to its level at once, recorded as reconfiguration; returns the leads moved. The caller holds the OU lock."""
    current = set(session.execute(select(EngagementLevel.id).where(EngagementLevel.unit_id == unit_id)).scalars())
    # Every name out of the way first: the snapshot may swap names between levels, each unique per OU at every row.
    session.execute(
        update(EngagementLevel)
        .where(EngagementLevel.unit_id == unit_id)
        .values(name=EngagementLevel.id)
        .execution_options(synchronize_session=False)
    )
    now = utcnow()
    for level in snapshot:
        values = {field: level[field] for field in LEVEL_FIELDS}
        if level["id"] in current:
            session.execute(
                update(EngagementLevel)
                .where(EngagementLevel.id == level["id"])
                .values(**values, updated_at=now)
                .execution_options(synchronize_session=False)
            )
        else:  # deleted since: back under its own id
            session.execute(
                insert(EngagementLevel).values(
                    id=level["id"], org_id=org_id, unit_id=unit_id, **values, created_at=now, updated_at=now
                )
            )
    removed = sorted(current - {level["id"] for level in snapshot})
    # Leads leave the levels the snapshot lacks before those go, so each move is recorded (ON DELETE SET NULL is not).
    moved = reclassify_unit(session, unit_id, exclude_level_ids=removed)
    if removed:
        session.execute(delete(EngagementLevel).where(EngagementLevel.id.in_(removed)))
    session.expire_all()  # the ORM's copies of these levels and leads are stale
    return moved


def ruleset_known(session: Session, unit_id: str, ruleset_id: str) -> bool:
    """A ruleset of the OU, or one it had (deleted since, its history kept)."""
    ruleset = select(Ruleset.id).where(Ruleset.unit_id == unit_id, Ruleset.id == ruleset_id)
    entry = select(RulesetHistory.id).where(RulesetHistory.unit_id == unit_id, RulesetHistory.ruleset_id == ruleset_id)
    return bool(session.execute(select(ruleset.exists().label("r"), entry.exists().label("e"))).one() != (False, False))
