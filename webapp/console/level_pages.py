"""The Levels page: the color-coded range bar, the table, and adding, editing and deleting levels through the level
API's own schemas and rules (webapp/services/levels.py LevelCrud: overlaps, names, the last level, history,
reclassification), its refusals shown beside the fields they name; the table's history, and reverting to an earlier
table after a confirm step (revert_levels, as POST /engagement-levels/history/{id}/revert)."""

from __future__ import annotations

from types import SimpleNamespace

from flask import request

from models.levels import EngagementLevel, LevelHistory
from models.seed import SEED_LEVELS
from webapp.app_state import db
from webapp.console.base import FormErrors, attempt, form_values, load, page, render, see_other
from webapp.console.lead_pages import levels_of_unit
from webapp.crud import get_scoped, scoped
from webapp.resources.levels import LevelSchema, LevelUpdateSchema
from webapp.services.levels import LevelCrud, revert_levels

FIELDS = ("name", "min_score", "max_score", "color", "order")
HISTORY_PAGE = 20
ACTIONS = {
    "create": "Added a level",
    "update": "Edited a level",
    "delete": "Deleted a level",
    "revert": "Reverted",
    "seed": "Sample data",
    "wipe-seed": "Sample data removed",
}
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


def snapshot_levels(snapshot: list[dict]) -> list:
    """A history entry's table as the page draws levels: lowest range first."""
    return [SimpleNamespace(**lv) for lv in sorted(snapshot, key=lambda lv: lv["min_score"])]


def level_text(lv: dict) -> str:
    top = f"{lv['max_score']}" if lv["max_score"] is not None else "+"
    return f"{lv['name']} {lv['min_score']}{'–' if lv['max_score'] is not None else ''}{top}"


def changes(before: list[dict] | None, after: list[dict]) -> list[str]:
    """What an entry changed in the table, from the entry before it: levels added, removed, renamed, moved, recolored."""
    if before is None:
        return [", ".join(level_text(lv) for lv in sorted(after, key=lambda lv: lv["min_score"]))]
    old = {lv["id"]: lv for lv in before}
    new = {lv["id"]: lv for lv in after}
    out = [f"added {level_text(new[i])}" for i in new if i not in old]
    out += [f"removed {level_text(old[i])}" for i in old if i not in new]
    for i in new.keys() & old.keys():
        a, b = old[i], new[i]
        if (a["min_score"], a["max_score"]) != (b["min_score"], b["max_score"]):
            out.append(
                f"{level_text(a)} → {b['min_score']}{'–' + str(b['max_score']) if b['max_score'] is not None else '+'}"
            )
        if a["name"] != b["name"]:
            out.append(f"renamed {a['name']} → {b['name']}")
        if a["color"] != b["color"]:
            out.append(f"{b['name']} recolored {a['color']} → {b['color']}")
    return out or ["no change to the table"]


def history_page(page_number: int) -> dict:
    """A page of the level table's history, newest first, each entry with what it changed."""
    rows = (
        db()
        .execute(
            scoped(LevelHistory)
            .order_by(LevelHistory.created_at.desc(), LevelHistory.id.desc())
            .offset((page_number - 1) * HISTORY_PAGE)
            .limit(
                HISTORY_PAGE + 1
            )  # the next older entry: what the page's last entry changed, and whether there is more
        )
        .scalars()
        .all()
    )
    shown = rows[:HISTORY_PAGE]
    entries = [
        {
            "entry": e,
            "action": ACTIONS.get(e.action, e.action),
            "changes": changes(rows[n + 1].snapshot if n + 1 < len(rows) else None, e.snapshot),
            "current": page_number == 1 and n == 0,
        }
        for n, e in enumerate(shown)
    ]
    return {"entries": entries, "page": page_number, "more": len(rows) > HISTORY_PAGE}


def who(entry) -> str:
    """Who made a history entry, as it was recorded then."""
    if entry.actor_kind == "credential":
        return f"API key {entry.actor_name or entry.actor}"
    return entry.actor_name or entry.actor or "unknown"


def _page(status=200, *, errors: FormErrors | None = None, values: dict | None = None, editing=None, done=None):
    levels = levels_of_unit()
    try:
        number = min(max(int(request.args.get("history_page", 1)), 1), 10_000)
    except ValueError:
        number = 1
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
        history=history_page(number),
        who=who,
        active="levels",
    )


@page("/levels")
def levels():
    done = {k: request.args[k] for k in ("created", "updated", "deleted", "reverted") if request.args.get(k)}
    return _page(done=done)


@page("/levels/history/<entry_id>/revert", need="configure")
def confirm_revert(entry_id):
    """The confirm step: the table the entry recorded beside the one in force, before anything changes."""
    entry = get_scoped(LevelHistory, entry_id, "level history entry")  # another OU's entry: the 404 page
    restored = snapshot_levels(entry.snapshot)
    current = levels_of_unit()
    return render(
        "level_revert.html",
        entry=entry,
        who=who(entry),
        restored=restored,
        restored_bar=range_bar(restored),
        current=current,
        current_bar=range_bar(current),
        active="levels",
    )


@page("/levels/history/<entry_id>/revert", methods=("POST",))
def revert_level_table(entry_id):
    get_scoped(LevelHistory, entry_id, "level history entry")  # another OU's entry: the 404 page
    _, errors = attempt(lambda: revert_levels(entry_id))
    if errors:
        return _page(errors.status, errors=errors)
    return see_other("levels", reverted="1")


@page("/levels", methods=("POST",))
def create_level():
    values = form_values(FIELDS, INTS, nullable=("max_score",))
    level, errors = attempt(lambda: CRUD.create(load(LevelSchema(), values)))
    if errors:
        return _page(errors.status, errors=errors, values=values)
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
    _, errors = attempt(lambda: CRUD.update(level.id, load(LevelUpdateSchema(partial=True), values)))
    if errors:
        return _page(errors.status, errors=errors, values=values, editing=level)
    return see_other("levels", updated=level.name)


@page("/levels/<level_id>/delete", methods=("POST",))
def delete_level(level_id):
    level = get_scoped(EngagementLevel, level_id, "engagement level")
    name = level.name
    _, errors = attempt(lambda: CRUD.delete(level.id))
    if errors:
        return _page(errors.status, errors=errors)
    return see_other("levels", deleted=name)
