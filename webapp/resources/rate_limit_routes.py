"""GET /me/rate-limit: the request limits the caller is held to and where it stands under each."""

from __future__ import annotations

from marshmallow import fields

from webapp.auth import principal
from webapp.blueprint import Blueprint
from webapp.rate_limits import describe
from webapp.schema_base import StrictSchema

blp = Blueprint("rate_limit", __name__, description="Rate limits")


class LimitStandingSchema(StrictSchema):
    key = fields.String(metadata={"description": "whom the limit counts: credential:ID, member:ID or address:IP"})
    limit = fields.Integer(metadata={"description": "requests per window"})
    window_seconds = fields.Integer()
    rps = fields.Float(metadata={"description": "the sustained rate, limit / window_seconds"})
    burst = fields.Integer(metadata={"description": "requests that may come at once (the whole window's)"})
    remaining = fields.Integer(
        allow_none=True, metadata={"description": "requests left now; null when Redis did not answer"}
    )
    reset_seconds = fields.Float(
        allow_none=True, metadata={"description": "seconds until the whole allowance is back; null as remaining"}
    )


class RateLimitSchema(StrictSchema):
    enabled = fields.Boolean(metadata={"description": "false when LEADPULSE_RATE_LIMIT_MODE is off"})
    mode = fields.String(metadata={"description": "enforce (429 past a limit), observe (counted, never refused), off"})
    key_by = fields.String(metadata={"description": "what this caller is limited by: credential or member"})
    key = fields.String(metadata={"description": "the caller's key, as limits.api.key"})
    rps = fields.Float(metadata={"description": "the api limit's sustained rate"})
    burst = fields.Integer(metadata={"description": "the api limit's burst"})
    stage = fields.String(metadata={"description": "the limit rps and burst describe (api)"})
    redis_available = fields.Boolean(
        allow_none=True, metadata={"description": "false: Redis did not answer and no limit is applied (fail open)"}
    )
    limits = fields.Dict(
        keys=fields.String(),
        values=fields.Nested(LimitStandingSchema),
        metadata={
            "description": "api and ingest (per caller; ingest routes take ingest), address (every request of "
            "this source address) and login (sign-in attempts from it)"
        },
    )


@blp.route("/me/rate-limit", need="caller")
@blp.response(200, RateLimitSchema)
def rate_limit():
    """For API credentials and members alike; reading it takes nothing beyond this request's own share."""
    return describe(principal())
