"""GET /stream: Server-Sent Events of one OU (new_event, score_update, level_change), fed by Redis pub/sub."""
from __future__ import annotations

import json
import time

from flask import Response, stream_with_context
from marshmallow import fields, validate

from webapp.auth import current_unit
from webapp.blueprint import Blueprint
from webapp.errors import not_found
from webapp.schema_base import StrictSchema
from webapp.state import close_db, state
from worker.stream import channel

blp = Blueprint("stream", __name__, description="Live events")
HEARTBEAT_SECONDS = 15  # a comment line this often: proxies keep the connection, and a gone client is noticed


class StreamArgs(StrictSchema):
    ouId = fields.String(validate=validate.Length(min=1, max=36))  # noqa: N815 (the reference's name)


@blp.route("/stream", methods=["GET"])
@blp.arguments(StreamArgs, location="query")
def stream(args):
    """Only the caller's OU: another OU's id is a 404. Holds one gunicorn thread per client while connected."""
    unit_id = current_unit()
    if args.get("ouId") not in (None, unit_id):
        raise not_found("organization unit")
    close_db()
    redis = state().redis

    def events():
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(channel(unit_id))
        try:
            yield f"event: ready\ndata: {json.dumps({'ou_id': unit_id})}\n\n"
            quiet_since = time.monotonic()
            while True:
                message = pubsub.get_message(timeout=1.0)
                if message is None:
                    if time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
                        quiet_since = time.monotonic()
                        yield ": keepalive\n\n"  # a write to a gone client raises here and ends the generator
                    continue
                news = json.loads(message["data"])
                for item in news["items"]:
                    yield f"event: {news['type']}\ndata: {json.dumps(item)}\n\n"
                quiet_since = time.monotonic()
        finally:  # the client left (or the worker stops): nothing stays subscribed
            pubsub.close()

    resp = Response(stream_with_context(events()), mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp
