"""Scoring: rulesets (draft or published, the primary), their rules and the decay rules, changed through the API's own
schemas and rules (webapp/services/rulesets.py, decays.py); publishing shows the rescore preview first and asks to
confirm, and a backtest replays the ruleset against an outcome (webapp/services/previews.py, docs/previews.md)."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

from flask import request
from marshmallow import ValidationError
from sqlalchemy import func, select

from models.rescore import current_rules
from models.scoring import DECAY_UNITS, PUBLISHED, DecayRule, Rule, Ruleset, RulesetHistory
from webapp.app_state import db
from webapp.auth import current_unit
from webapp.console.base import FormErrors, attempt, flags, form_values, load, page, render, see_other
from webapp.crud import get_scoped, scoped
from webapp.errors import field_paths
from webapp.resources.decays import DecaySchema, DecayUpdateSchema
from webapp.resources.rulesets import (
    BacktestIn,
    PreviewIn,
    RuleSchema,
    RulesetSchema,
    RulesetUpdateSchema,
    RuleUpdateSchema,
)
from webapp.services import previews, rulesets
from webapp.services.decays import DecayCrud
from webapp.services.rulesets import RuleCrud, RulesetCrud

RULESETS, RULES, DECAYS = RulesetCrud(), RuleCrud(), DecayCrud()
RULESET_FIELDS = ("name", "start_date", "end_date")
RULESET_FLAGS = ("is_primary", "active")
RULE_FIELDS = ("event_type", "weight", "icon", "start_at", "end_at")
DECAY_FIELDS = ("inactive_for", "unit", "decrease")
BACKTEST_FIELDS = ("outcome_kind", "outcome", "since", "until")
OUTCOME_KINDS = {"event_type": "An event of this type", "lifecycle_stage": "A HubSpot lifecycle stage reached"}
HISTORY_SHOWN = 10
MINUTE = "%Y-%m-%dT%H:%M"  # what a datetime-local field shows (read back as UTC)


def _minutes(value) -> str:
    return value.strftime(MINUTE) if value else ""


def has_unpublished_changes(rs: Ruleset) -> bool:
    """Rules edited since the ruleset was published: they score only once it is published again."""
    if rs.status != PUBLISHED:
        return False
    by_id = operator.itemgetter("id")
    return sorted(current_rules(db(), rs.id), key=by_id) != sorted(rs.published_rules or [], key=by_id)


def _rulesets_page(status=200, *, errors=None, values=None, done=None):
    rows = db().execute(scoped(Ruleset).order_by(Ruleset.is_primary.desc(), Ruleset.created_at)).scalars().all()
    per_ruleset = select(Rule.ruleset_id, func.count()).where(Rule.unit_id == current_unit()).group_by(Rule.ruleset_id)
    counts = dict(db().execute(per_ruleset).all())
    return render(
        "scoring.html",
        status,
        rulesets=rows,
        counts=counts,
        changed={r.id for r in rows if has_unpublished_changes(r)},
        errors=errors,
        values=values or {"active": True},
        done=done,
        tab="rulesets",
        active="scoring",
    )


@page("/scoring")
def scoring():
    return _rulesets_page(done={k: request.args[k] for k in ("deleted",) if request.args.get(k)})


def _ruleset_values() -> dict:
    values = form_values(RULESET_FIELDS, nullable=("start_date", "end_date"))
    return values | flags(RULESET_FLAGS)


@page("/scoring/rulesets", methods=("POST",))
def create_ruleset():
    values = _ruleset_values()
    made, errors = attempt(lambda: RULESETS.create(load(RulesetSchema(), values)))
    if errors:
        return _rulesets_page(errors.status, errors=errors, values=values)
    return see_other("ruleset", ruleset_id=made.id, created="1")


def _rules_of(rs: Ruleset) -> list[Rule]:
    return db().execute(scoped(Rule).where(Rule.ruleset_id == rs.id).order_by(Rule.created_at)).scalars().all()


def _ruleset_page(
    rs: Ruleset, status=200, *, errors=None, posted=None, values=None, editing=None, report=None, trial=None
):
    """The ruleset's page; posted names the form that was sent (settings, rule, backtest, try): it shows what was
    typed, and trial what the try-changes form holds and answered."""
    rules = _rules_of(rs)
    history = (
        db()
        .execute(
            scoped(RulesetHistory)
            .where(RulesetHistory.ruleset_id == rs.id)
            .order_by(RulesetHistory.created_at.desc(), RulesetHistory.id.desc())
            .limit(HISTORY_SHOWN)
        )
        .scalars()
        .all()
    )
    settings = {
        "name": rs.name,
        "is_primary": rs.is_primary,
        "active": rs.active,
        "start_date": _minutes(rs.start_date),
        "end_date": _minutes(rs.end_date),
    }
    forms = {
        "settings": settings,
        "rule": {"active": True},
        "backtest": {"outcome_kind": "event_type"},
        "try": {"outcome_kind": "event_type"},
    }
    if editing is not None:
        forms["rule"] = {
            "event_type": editing.event_type,
            "weight": editing.weight,
            "icon": editing.icon or "",
            "active": editing.active,
            "start_at": _minutes(editing.start_at),
            "end_at": _minutes(editing.end_at),
        }
    if posted:
        forms[posted] = values or {}
    done = {k: request.args[k] for k in ("created", "saved", "published", "unpublished") if request.args.get(k)}
    return render(
        "ruleset.html",
        status,
        rs=rs,
        rules=rules,
        published={r["id"]: r for r in rs.published_rules or []},
        changed=has_unpublished_changes(rs),
        history=history,
        forms=forms,
        errors=errors,
        posted=posted,
        editing=editing,
        report=report,
        trial=trial or Trial(_trial_rows(rules, {})),
        outcome_kinds=OUTCOME_KINDS,
        done=done,
        active="scoring",
    )


@page("/scoring/rulesets/<ruleset_id>")
def ruleset(ruleset_id):
    return _ruleset_page(get_scoped(Ruleset, ruleset_id, "ruleset"))


@page("/scoring/rulesets/<ruleset_id>", methods=("POST",))
def update_ruleset(ruleset_id):
    rs = get_scoped(Ruleset, ruleset_id, "ruleset")
    values = _ruleset_values()
    _, errors = attempt(lambda: RULESETS.update(rs.id, load(RulesetUpdateSchema(partial=True), values)))
    if errors:
        db().expire(rs)  # the page shows the stored ruleset, the form what was typed
        return _ruleset_page(rs, errors.status, errors=errors, posted="settings", values=values)
    return see_other("ruleset", ruleset_id=rs.id, saved="settings")


@page("/scoring/rulesets/<ruleset_id>/delete", methods=("POST",))
def delete_ruleset(ruleset_id):
    rs = get_scoped(Ruleset, ruleset_id, "ruleset")
    name = rs.name
    RULESETS.delete(rs.id)
    return see_other("scoring", deleted=name)


def _rule_values() -> dict:
    values = form_values(RULE_FIELDS, ints=("weight",), nullable=("icon", "start_at", "end_at"))
    return values | flags(("active",))


@page("/scoring/rulesets/<ruleset_id>/rules", methods=("POST",))
def create_rule(ruleset_id):
    rs = get_scoped(Ruleset, ruleset_id, "ruleset")
    values = _rule_values()
    _, errors = attempt(lambda: RULES.create(load(RuleSchema(), {**values, "ruleset_id": rs.id})))
    if errors:
        return _ruleset_page(rs, errors.status, errors=errors, posted="rule", values=values)
    return see_other("ruleset", ruleset_id=rs.id, saved="rule")


@page("/scoring/rules/<rule_id>/edit")
def edit_rule(rule_id):
    rule = get_scoped(Rule, rule_id, "rule")
    return _ruleset_page(get_scoped(Ruleset, rule.ruleset_id, "ruleset"), editing=rule)


@page("/scoring/rules/<rule_id>", methods=("POST",))
def update_rule(rule_id):
    rule = get_scoped(Rule, rule_id, "rule")
    rs = get_scoped(Ruleset, rule.ruleset_id, "ruleset")
    values = _rule_values()
    _, errors = attempt(lambda: RULES.update(rule.id, load(RuleUpdateSchema(partial=True), values)))
    if errors:
        db().expire(rule)
        return _ruleset_page(rs, errors.status, errors=errors, posted="rule", values=values, editing=rule)
    return see_other("ruleset", ruleset_id=rs.id, saved="rule")


@page("/scoring/rules/<rule_id>/delete", methods=("POST",))
def delete_rule(rule_id):
    rule = get_scoped(Rule, rule_id, "rule")
    ruleset_id = rule.ruleset_id
    RULES.delete(rule.id)
    return see_other("ruleset", ruleset_id=ruleset_id, saved="rule")


@page("/scoring/rulesets/<ruleset_id>/publish", need="configure")
def confirm_publish(ruleset_id):
    """The confirm step: what publishing would do (POST /rulesets/{id}/rescore-preview's own computation), nothing
    written yet."""
    rs = get_scoped(Ruleset, ruleset_id, "ruleset")
    preview = previews.rescore_preview(rs.id, {})
    rules = db().execute(scoped(Rule).where(Rule.ruleset_id == rs.id).order_by(Rule.created_at)).scalars().all()
    return render("ruleset_publish.html", rs=rs, preview=preview, rules=rules, active="scoring")


@page("/scoring/rulesets/<ruleset_id>/publish", methods=("POST",))
def publish_ruleset(ruleset_id):
    rs, leads = rulesets.publish(get_scoped(Ruleset, ruleset_id, "ruleset").id)
    return see_other("ruleset", ruleset_id=rs.id, published=str(leads))


@page("/scoring/rulesets/<ruleset_id>/unpublish", methods=("POST",))
def unpublish_ruleset(ruleset_id):
    rs = rulesets.unpublish(get_scoped(Ruleset, ruleset_id, "ruleset").id)
    return see_other("ruleset", ruleset_id=rs.id, unpublished="1")


@page("/scoring/rulesets/<ruleset_id>/backtest", methods=("POST",))
def backtest(ruleset_id):
    """A backtest of the ruleset's current rules (and of the primary) against an outcome: a report, nothing written."""
    rs = get_scoped(Ruleset, ruleset_id, "ruleset")
    values = form_values(BACKTEST_FIELDS, nullable=("since", "until"))
    report, errors = attempt(lambda: previews.backtest(rs.id, load(BacktestIn(), _backtest_body(values))))
    if errors:
        errors.fields = {_backtest_field(k): v for k, v in errors.fields.items()}
        return _ruleset_page(rs, errors.status, errors=errors, posted="backtest", values=values)
    return _ruleset_page(rs, report=report, posted="backtest", values=values)


def _backtest_body(values: dict, edits: list[dict] | None = None) -> dict:
    """The backtest form as POST /rulesets/{id}/backtest's body (with a trial's rule edits); an outcome kind the form
    does not offer is refused beside its control."""
    kind = values.get("outcome_kind")
    if kind not in OUTCOME_KINDS:
        raise FormErrors({"outcome_kind": ["Choose what counts as the outcome."]})
    body = {"outcome": {kind: values.get("outcome", "")}, "since": values.get("since"), "until": values.get("until")}
    return body if edits is None else {**body, "rules": edits}


NEW_RULES = 3  # blank rows for new rules in the try-changes form


@dataclass
class Trial:
    """The try-changes form: its rows as typed, the edits they make (POST /rulesets/{id}/rescore-preview's and
    backtest's `rules`), and what the preview or backtest answered."""

    rows: list[dict]
    edits: list[dict] = field(default_factory=list)
    preview: dict | None = None
    report: dict | None = None

    def saved(self, event_type: str) -> int | None:
        """The saved rule's points for the event type; None for a new rule."""
        return next((r["saved"] for r in self.rows if r["saved"] is not None and r["event_type"] == event_type), None)


def _number(value: str):
    """A typed number as the API's JSON carries it; anything else stays text, for the schema to refuse by name."""
    try:
        return int(value)
    except ValueError:
        return value


def _trial_rows(rules: list[Rule], form) -> list[dict]:
    """One row per saved rule (keyed by its id: a rule added meanwhile cannot shift the rows), then the new ones."""
    rows = []
    for rule in rules:
        typed = form.get(f"weight-{rule.id}")
        rows.append(
            {
                "key": rule.id,
                "event_type": rule.event_type,
                "weight": str(rule.weight) if typed is None else typed.strip(),
                "saved": rule.weight,
                "active": rule.active,
                "out": form.get(f"out-{rule.id}") == "true",
            }
        )
    for n in range(NEW_RULES):
        key = f"new{n}"
        typed = (form.get(f"type-{key}") or "").strip(), (form.get(f"weight-{key}") or "").strip()
        rows.append({"key": key, "n": n + 1, "event_type": typed[0], "weight": typed[1], "saved": None})
    return rows


def _trial_edits(rows: list[dict]) -> tuple[list[dict], list[str]]:
    """The rows as the API's rule edits (only what differs from the saved rules), and the row each edit came from."""
    edits, origin = [], []
    for row in rows:
        if row["saved"] is not None:
            if row.get("out"):
                edit = {"event_type": row["event_type"], "active": False}  # left out: the API's way to drop a rule
            elif row["weight"] != str(row["saved"]):
                edit = {"event_type": row["event_type"], "weight": _number(row["weight"])}
            else:
                continue
        elif row["event_type"] or row["weight"]:
            edit = {"event_type": row["event_type"]} | ({"weight": _number(row["weight"])} if row["weight"] else {})
        else:
            continue
        edits.append(edit)
        origin.append(row["key"])
    return edits, origin


def _trial_load(schema, body: dict) -> dict:
    """body through the API's schema, its complaints named as the API names them (rules.1.weight): each goes beside
    the row it is about."""
    try:
        return schema.load(body)
    except ValidationError as exc:
        raise FormErrors(field_paths(exc.messages)) from None


def _row_errors(errors: FormErrors, origin: list[str]) -> FormErrors:
    """rules.N.field (the API's name) as the control of the row edit N came from: its type box for the event type,
    its points box for anything else; the backtest's own fields as the backtest form names them."""
    fields = {}
    for name, said in errors.fields.items():
        parts = name.split(".")
        if parts[0] == "rules" and len(parts) == 3 and parts[1].isdigit() and int(parts[1]) < len(origin):
            control = "type" if parts[2] == "event_type" else "weight"
            name = f"{control}-{origin[int(parts[1])]}"
        fields.setdefault(_backtest_field(name), []).extend(said)
    return FormErrors(fields, errors.message, errors.status)


@page("/scoring/rulesets/<ruleset_id>/try", methods=("POST",))
def try_changes(ruleset_id):
    """Rule edits tried without saving them: the rescore preview or the backtest of the ruleset with the edits, exactly
    as the API's bodies carry them (webapp/services/previews.py, docs/previews.md); nothing is written."""
    rs = get_scoped(Ruleset, ruleset_id, "ruleset")
    trial = Trial(_trial_rows(_rules_of(rs), request.form))
    trial.edits, origin = _trial_edits(trial.rows)
    values = form_values(BACKTEST_FIELDS, nullable=("since", "until"))
    backtesting = request.form.get("run") == "backtest"

    def answer():
        if backtesting:
            return previews.backtest(rs.id, _trial_load(BacktestIn(), _backtest_body(values, trial.edits)))
        return previews.rescore_preview(rs.id, _trial_load(PreviewIn(), {"rules": trial.edits}))

    answered, errors = attempt(answer)
    if backtesting:
        trial.report = answered
    else:
        trial.preview = answered
    if errors:
        errors = _row_errors(errors, origin)
    return _ruleset_page(rs, errors.status if errors else 200, errors=errors, posted="try", values=values, trial=trial)


def _backtest_field(name: str) -> str:
    """The API names the outcome's fields inside it (outcome.event_type); the form has one box for either."""
    return "outcome" if name == "outcome" or name.startswith("outcome.") else name


def _decays_page(status=200, *, errors=None, values=None, editing=None, done=None):
    rows = db().execute(scoped(DecayRule).order_by(DecayRule.created_at)).scalars().all()
    return render(
        "decays.html",
        status,
        decays=rows,
        units={unit: unit for unit in DECAY_UNITS},
        errors=errors,
        values=values or {"unit": "days"},
        editing=editing,
        done=done,
        tab="decays",
        active="scoring",
    )


@page("/scoring/decays")
def decays():
    return _decays_page(done={k: request.args[k] for k in ("created", "saved", "deleted") if request.args.get(k)})


@page("/scoring/decays", methods=("POST",))
def create_decay():
    values = form_values(DECAY_FIELDS, ints=("inactive_for", "decrease"))
    _, errors = attempt(lambda: DECAYS.create(load(DecaySchema(), values)))
    if errors:
        return _decays_page(errors.status, errors=errors, values=values)
    return see_other("decays", created="1")


@page("/scoring/decays/<decay_id>/edit")
def edit_decay(decay_id):
    rule = get_scoped(DecayRule, decay_id, "decay rule")
    return _decays_page(editing=rule, values={f: getattr(rule, f) for f in DECAY_FIELDS})


@page("/scoring/decays/<decay_id>", methods=("POST",))
def update_decay(decay_id):
    rule = get_scoped(DecayRule, decay_id, "decay rule")
    values = form_values(DECAY_FIELDS, ints=("inactive_for", "decrease"))
    _, errors = attempt(lambda: DECAYS.update(rule.id, load(DecayUpdateSchema(partial=True), values)))
    if errors:
        return _decays_page(errors.status, errors=errors, values=values, editing=rule)
    return see_other("decays", saved="1")


@page("/scoring/decays/<decay_id>/delete", methods=("POST",))
def delete_decay(decay_id):
    rule = get_scoped(DecayRule, decay_id, "decay rule")
    DECAYS.delete(rule.id)
    return see_other("decays", deleted="1")
