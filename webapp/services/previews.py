"""Trying a ruleset before it goes live: a rescore preview and a backtest, on one read-only snapshot of the OU, each
from the ruleset's rules with the request's edits laid over them (docs/previews.md)."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

from models.alerts import alert_config
from models.backtest import Backtest, Outcome, Replay, VersionResult, run_backtest
from models.db import read_only_snapshot
from models.engine import RulesetSpec
from models.level_rules import LevelSpec
from models.rescore import allows_negative, current_rules
from models.rescore_preview import RescorePreview, RuleEditError, preview_rescore, with_edits
from models.scoring import Ruleset
from models.unit_context import UnitContext, level_specs, ruleset_spec
from webapp.app_state import db, state
from webapp.crud import get_scoped, scoped
from webapp.errors import bad_request

UNCLASSIFIED = "Unclassified"


@contextmanager
def _snapshot():
    """A session of its own, read-only, one snapshot for the whole replay (models/db.read_only_snapshot)."""
    with state().Session() as session:
        yield read_only_snapshot(session)


def _trial(ruleset_id: str, body: dict) -> tuple[Ruleset, RulesetSpec]:
    """The ruleset of the caller's OU, and how it would score once published with the body's rule edits."""
    ruleset = get_scoped(Ruleset, ruleset_id, "ruleset")
    try:
        rules = with_edits(current_rules(db(), ruleset.id), body.get("rules", []), body.get("replace_rules", False))
    except RuleEditError as exc:
        raise bad_request(exc.message, exc.field) from None
    return ruleset, ruleset_spec(ruleset, rules)


def rescore_preview(ruleset_id: str, body: dict) -> dict:
    """What publishing the ruleset (with the edits) would change; as_primary defaults to whether it is the primary."""
    ruleset, spec = _trial(ruleset_id, body)
    as_primary = body.get("as_primary", ruleset.is_primary)
    unit_id = ruleset.unit_id
    with _snapshot() as s:
        preview = preview_rescore(s, unit_id, spec, allows_negative(s, unit_id), level_specs(s, unit_id), as_primary)
    return {"ruleset_id": ruleset.id, **_preview_body(preview)}


def _preview_body(p: RescorePreview) -> dict:
    return {
        "as_primary": p.as_primary,
        "leads": p.leads,
        "rescored_leads": p.rescored_leads,
        "score_changes": p.score_changes,
        "level_changes": p.level_changes,
        "levels": None
        if p.levels is None
        else [
            {**_level(m.level), "before": m.before, "after": m.after, "moved_in": m.moved_in, "moved_out": m.moved_out}
            for m in p.levels
        ],
        "top_movers": [
            {
                "lead_id": m.lead_id,
                "change": m.change,
                "before": {"score": m.before.score, **_level(m.before.level, p.as_primary)},
                "after": {"score": m.after.score, **_level(m.after.level, p.as_primary)},
            }
            for m in p.top_movers or []
        ],
    }


def _level(level: LevelSpec | None, classified: bool = True) -> dict:
    """A level as the answers name it: id and name, Unclassified with a null id; both null where levels are not
    previewed (a ruleset that does not set the leads' score)."""
    if not classified:
        return {"level_id": None, "level": None}
    return {"level_id": level.id if level else None, "level": level.name if level else UNCLASSIFIED}


def backtest(ruleset_id: str, body: dict) -> dict:
    """Replay the OU's events under the ruleset (with the edits) and under the current primary, against the outcome."""
    ruleset, spec = _trial(ruleset_id, body)
    unit_id = ruleset.unit_id
    versions = {"draft": spec}
    primary = db().execute(scoped(Ruleset).where(Ruleset.is_primary.is_(True))).scalar()
    if primary is not None:
        versions["primary"] = ruleset_spec(primary)
    alerts = alert_config(db(), unit_id)
    with _snapshot() as s:
        levels = level_specs(s, unit_id)
        ctx = UnitContext(
            unit_id,
            allows_negative(s, unit_id),
            levels=levels,
            alert_bar=alerts.level.min_score if alerts.level else None,
        )
        replay = Replay(body.get("since"), body["until"], ctx, timedelta(hours=alerts.cooldown_hours))
        result = run_backtest(s, unit_id, versions, Outcome(**body["outcome"]), replay)
    return {
        "ruleset_id": ruleset.id,
        "outcome": body["outcome"],
        "since": result.since,
        "until": result.until,
        "leads": result.leads,
        "reached_outcome": result.reached,
        "base_rate": _ratio(result.reached, result.leads),
        "events_replayed": result.events,
        "alert_level": None if alerts.level is None else _level(alerts.level),
        "cooldown_hours": alerts.cooldown_hours,
        "versions": {
            name: _version(result, result.versions.get(name), alerts.level is not None) for name in ("draft", "primary")
        },
    }


def _version(result: Backtest, version: VersionResult | None, alerting: bool) -> dict | None:
    if version is None:
        return None
    rows = []
    for level in [*result.levels, None]:
        key = level.id if level else None
        leads, reached = version.entered[key], version.reached[key]
        rows.append(
            {
                **_level(level),
                "leads": leads,
                "reached_outcome": reached,
                "precision": _ratio(reached, leads),
                "lift": _ratio(reached * result.leads, leads * result.reached),  # precision / base rate
            }
        )
    return {
        "ruleset_id": version.spec.id,
        "levels": rows,
        "alerts": {"sent": version.alerts_sent, "suppressed": version.alerts_suppressed} if alerting else None,
    }


def _ratio(part: int, whole: int) -> float | None:
    """part / whole to four places; None where it has no meaning (nothing to divide by)."""
    return round(part / whole, 4) if whole else None
