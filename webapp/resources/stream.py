"""GET /stream: Server-Sent Events of one OU (new_event, score_update, level_change), fed by Redis pub/sub."""

from __future__ import annotations

import json
import queue

from flask import Response, stream_with_context
from marshmallow import fields, validate

from webapp.app_state import close_db, state
from webapp.auth import current_unit
from webapp.blueprint import Blueprint
from webapp.errors import not_found
from webapp.schema_base import StrictSchema
from webapp.stream_hub import LOST, StreamUnavailable

blp = Blueprint("stream", __name__, description="Live events")
HEARTBEAT_SECONDS = 15  # a comment line this often: proxies keep the connection, and a gone client is noticed


class StreamArgs(StrictSchema):
    ouId = fields.String(validate=validate.Length(min=1, max=36))


class StreamEventSchema(StrictSchema):
    """One Server-Sent Event as the stream's reader sees it (comment lines, the keepalives, carry no event)."""

    event = fields.String(validate=validate.OneOf(["ready", "new_event", "score_update", "level_change"]))
    data = fields.String(
        metadata={
            "description": "a JSON object. ready: {ou_id}; new_event: {event_id, id, lead_id, event_type}; "
            "score_update: {lead_id, score, level_id}; level_change: {lead_id, from_level_id, to_level_id, score}"
        }
    )


# The console's pages listen here with EventSource, which cannot send an Authorization header: their session cookie
# signs them in (a GET changes nothing, so it needs no CSRF token).
@blp.route("/stream", methods=["GET"], statuses=(404,), session_cookie=True)
@blp.arguments(StreamArgs, location="query")
@blp.alt_response(200, schema=StreamEventSchema, content_type="text/event-stream", success=True)
def stream(args):
    """Only the caller's OU: another OU's id is a 404. A client costs a queue, not a Redis connection or a thread."""
    unit_id = current_unit()
    if args.get("ouId") not in (None, unit_id):
        raise not_found("organization unit")
    close_db()
    hub = state().stream_hub

    def events():  # joins only when the body is read: a HEAD, or a response never sent, leaves nothing behind
        try:
            news_queue = hub.join(unit_id)
        except StreamUnavailable:  # EventSource gives up on a non-200; told to retry in 5 s, it comes back
            yield "retry: 5000\n: live updates are unavailable right now\n\n"
            return
        try:
            yield f"event: ready\ndata: {json.dumps({'ou_id': unit_id})}\n\n"
            while True:
                try:
                    data = news_queue.get(timeout=HEARTBEAT_SECONDS)
                except queue.Empty:
                    yield ": keepalive\n\n"  # a write to a gone client raises here and ends the generator
                    continue
                if data is LOST:
                    return  # news may have been missed (Redis away, or this client fell behind): the client reconnects
                news = json.loads(data)
                for item in news["items"]:
                    yield f"event: {news['type']}\ndata: {json.dumps(item)}\n\n"
        finally:  # the client left (or the worker stops): its queue goes
            hub.leave(unit_id, news_queue)

    resp = Response(stream_with_context(events()), mimetype="text/event-stream")
    resp.headers["Cache-Control"] = "no-cache"
    resp.headers["X-Accel-Buffering"] = "no"
    return resp
