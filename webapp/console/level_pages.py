"""The Levels page: the color-coded range bar, the table, and adding, editing and deleting levels through the level
API's own schemas and rules (webapp/resources/levels.py LevelCrud: overlaps, names, the last level, history,
reclassification), its refusals shown beside the fields they name."""

from __future__ import annotations

from flask import request

from models.levels import EngagementLevel
from models.seed import SEED_LEVELS
from webapp.app_state import db
from webapp.console.base import FormErrors, form_errors, form_values, load, page, render, see_other
from webapp.console.lead_pages import levels_of_unit
from webapp.crud import get_scoped, scoped
from webapp.errors import ApiError
from webapp.resources.levels import LevelCrud, LevelSchema, LevelUpdateSchema

FIELDS = ("name", "min_score", "max_score", "color", "order")
INTS = ("min_score", "max_score", "order")
CRUD = LevelCrud()
REFERENCE_TIERS = [  # the reference's four tiers (models/seed.py), offered in one click on an empty page
    {"name": name, "min_score": low, "max_score": high, "color": color, "order": n}
    for n, (name, low, high, color) in enumerate(SEED_LEVELS, start=1)
]


def range_bar(levels) -> dict:
    """The levels laid on the score axis as the reference's guide draws them: the top range open to the right."""
    if not levels:
        return {"segments": [], "ticks": []}
    low = min(lv.min_score for lv in levels)
    top = max(lv.max_score if lv.max_score is not None else lv.min_score for lv in levels)
    open_top = any(lv.max_score is None for lv in levels)
    high = top + max(10, (top - low) // 4) if open_top else top + 1
    span = max(high - low, 1)
    segments = []
    for lv in levels:
        end = (lv.max_score + 1) if lv.max_score is not None else high
        segments.append(
            {
                "name": lv.name,
                "color": lv.color,
                "x": (lv.min_score - low) / span,
                "width": max(end - lv.min_score, 0) / span,
                "label": f"{lv.min_score}–{lv.max_score}" if lv.max_score is not None else f"{lv.min_score}+",
            }
        )
    return {"segments": segments}


def _page(status=200, *, errors: FormErrors | None = None, values: dict | None = None, editing=None, done=None):
    levels = levels_of_unit()
    return render(
        "levels.html",
        status,
        levels=levels,
        bar=range_bar(levels),
        errors=errors,
        values=values or {},
        editing=editing,
        done=done,
        reference=REFERENCE_TIERS,
        active="levels",
    )


@page("/levels")
def levels():
    done = {k: request.args[k] for k in ("created", "updated", "deleted") if request.args.get(k)}
    return _page(done=done)


@page("/levels", methods=("POST",))
def create_level():
    values = form_values(FIELDS, INTS, nullable=("max_score",))
    try:
        level = CRUD.create(load(LevelSchema(), values))
    except FormErrors as exc:
        return _page(exc.status, errors=exc, values=values)
    except ApiError as exc:
        return _page(exc.status, errors=form_errors(exc), values=values)
    return see_other("levels", created=level.name)


@page("/levels/reference", methods=("POST",))
def create_reference_levels():
    """The reference's four tiers at once, on an OU that has no levels yet."""
    if db().execute(scoped(EngagementLevel).limit(1)).first() is not None:
        message = "This organization unit has levels already: add or edit them one by one."
        return _page(409, errors=FormErrors({"_schema": [message]}, message, 409))
    for tier in REFERENCE_TIERS:
        CRUD.create(load(LevelSchema(), dict(tier)))
    return see_other("levels", created=", ".join(t["name"] for t in REFERENCE_TIERS))


@page("/levels/<level_id>/edit")
def edit_level(level_id):
    level = get_scoped(EngagementLevel, level_id, "engagement level")
    values = {f: getattr(level, f) for f in FIELDS}
    return _page(editing=level, values=values)


@page("/levels/<level_id>", methods=("POST",))
def update_level(level_id):
    level = get_scoped(EngagementLevel, level_id, "engagement level")
    values = form_values(FIELDS, INTS, nullable=("max_score",))
    values.setdefault("max_score", None)  # a blank top: the open range, as the form shows it
    try:
        CRUD.update(level.id, load(LevelUpdateSchema(partial=True), values))
    except FormErrors as exc:
        return _page(exc.status, errors=exc, values=values, editing=level)
    except ApiError as exc:
        return _page(exc.status, errors=form_errors(exc), values=values, editing=level)
    return see_other("levels", updated=level.name)


@page("/levels/<level_id>/delete", methods=("POST",))
def delete_level(level_id):
    level = get_scoped(EngagementLevel, level_id, "engagement level")
    name = level.name
    try:
        CRUD.delete(level.id)
    except ApiError as exc:
        return _page(exc.status, errors=form_errors(exc))
    return see_other("levels", deleted=name)
