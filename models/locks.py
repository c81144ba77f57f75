"""Advisory and row locks that keep scoring, configuration changes and alert examination from interleaving."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

UNIT_LOCK_SPACE = 1818  # advisory-lock namespace for "OU configuration vs scoring"


ALERT_LOCK_SPACE = 1820  # advisory-lock namespace for "examining an OU's level changes into alerts"


def lock_unit(session: Session, unit_id: str, shared: bool = False, space: int = UNIT_LOCK_SPACE) -> None:
    """Configuration changes of an OU (exclusive) never interleave with a scoring batch (shared).

    A batch reads rulesets and levels once; without this a publish or level edit could land between
    that read and the batch's commit and be silently undone. SQLite serializes writers already.
    Another space serializes something else per OU (ALERT_LOCK_SPACE: one alert examiner at a time).
    """
    if session.get_bind().dialect.name == "postgresql":
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        session.execute(text(f"SELECT {fn}(:space, hashtext(:u))"), {"space": space, "u": unit_id})


def lock_leads(session: Session, lead_pks) -> None:
    """Row-lock these leads in pk order (NO KEY UPDATE, as scoring does), not the whole OU."""
    if lead_pks and session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "SELECT count(*) FROM (SELECT 1 FROM leads WHERE pk = ANY(:pks) ORDER BY pk FOR NO KEY UPDATE) AS locked"
            ),
            {"pks": sorted(lead_pks)},
        )


def lock_unit_leads(session: Session, unit_id: str) -> None:
    """Row-lock every lead of an OU in pk order (NO KEY UPDATE: ingest's foreign-key checks still pass)."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text(
                "SELECT count(*) FROM (SELECT 1 FROM leads WHERE unit_id = :u ORDER BY pk FOR NO KEY UPDATE) AS locked"
            ),
            {"u": unit_id},
        )
