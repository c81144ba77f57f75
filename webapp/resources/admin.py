"""Admin operations on the active OU: sample data in (POST /admin/seed) and out again (POST /admin/wipe-seed)."""

from __future__ import annotations

from flask import jsonify
from marshmallow import fields

from models.seed import SeedRefused, seed_unit, wipe_seed
from webapp.app_state import db, state
from webapp.auth import current_unit, principal
from webapp.blueprint import Blueprint
from webapp.errors import ApiError
from webapp.schema_base import StrictSchema
from webapp.services.levels import try_enqueue_options
from worker.jobs import try_kick, try_kick_alerts

blp = Blueprint("admin", __name__, description="Admin operations")


class SeededSchema(StrictSchema):
    levels_created = fields.List(fields.String(), metadata={"description": "names; none when the OU had levels"})
    ruleset_id = fields.String(allow_none=True, metadata={"description": "the demo ruleset"})
    leads = fields.List(fields.String(), metadata={"description": "the sample leads' ids"})
    events_accepted = fields.Integer()


class WipedSchema(StrictSchema):
    leads_deleted = fields.Integer()
    rulesets_deleted = fields.Integer()
    levels_deleted = fields.Integer()


@blp.route("/admin/seed", methods=["POST"], member_only=True, statuses=(201, 409))
@blp.alt_response(201, schema=SeededSchema, success=True)
def seed():
    """Levels (if the OU has none), a published demo ruleset and a few days of events for six leads; safe to repeat."""
    p = principal()
    unit_id = current_unit()
    session = db()
    try:
        out = seed_unit(session, p.org_id, unit_id, actor=p.actor)
    except SeedRefused as exc:
        raise ApiError(409, "conflict", str(exc))
    session.commit()
    try_kick(state())  # score the new events
    try_enqueue_options(unit_id)
    resp = jsonify(
        {
            "levels_created": out.levels_created,
            "ruleset_id": out.ruleset_id,
            "leads": out.leads,
            "events_accepted": out.events,
        }
    )
    resp.status_code = 201
    return resp


@blp.route("/admin/wipe-seed", methods=["POST"], member_only=True)
@blp.alt_response(200, schema=WipedSchema, success=True)
def wipe():
    """Remove what seeding created and nothing else; the OU's own leads are rescored without the demo ruleset."""
    unit_id = current_unit()
    session = db()
    out = wipe_seed(session, unit_id, principal().actor)
    session.commit()
    try_enqueue_options(unit_id)
    try_kick_alerts(state(), unit_id)
    return jsonify(out)
