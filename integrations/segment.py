"""Segment's tracking spec mapped onto LeadPulse events: pure functions, so the mapping is tested without HTTP."""

from __future__ import annotations

EVENT_TYPES = ("track", "page")
PAGE_EVENT_TYPE = "page_view"


class Unsupported(ValueError):
    """A Segment call LeadPulse does not turn into anything (screen, group, alias)."""


def _context_traits(msg: dict):
    context = msg.get("context")
    return context.get("traits") if isinstance(context, dict) else None


def _email(msg: dict) -> str | None:
    for traits in (_context_traits(msg), msg.get("traits"), msg.get("properties")):
        if isinstance(traits, dict) and isinstance(traits.get("email"), str) and traits["email"].strip():
            return traits["email"]
    return None


def aliases(msg: dict) -> list[dict]:
    """userId, anonymousId and the email in traits identify the lead (any one is enough)."""
    out = []
    for key, kind in (("userId", "external_id"), ("anonymousId", "cookie")):
        value = msg.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
            out.append({"alias_kind": kind, "raw_value": str(value)})
    email = _email(msg)
    if email:
        out.append({"alias_kind": "email", "raw_value": email})
    return out


def event_body(msg: dict) -> dict:
    """A track or page call as a POST /ingest body; messageId becomes the idempotency key."""
    kind = msg.get("type")
    if kind not in EVENT_TYPES:
        raise Unsupported(f"Segment '{kind}' calls are not events")
    properties = msg.get("properties") if isinstance(msg.get("properties"), dict) else {}
    body: dict = {"aliases": aliases(msg), "metadata": dict(properties)}
    if kind == "track":
        body["event_type"] = msg.get("event")
    else:
        body["event_type"] = PAGE_EVENT_TYPE
        for key in ("name", "category"):
            if isinstance(msg.get(key), str):
                body["metadata"].setdefault(f"page_{key}", msg[key])
    body["metadata"]["channel"] = body["metadata"].get("channel") or "web"
    if msg.get("timestamp") is not None:
        body["timestamp"] = msg["timestamp"]
    if msg.get("messageId") is not None:
        body["event_id"] = f"segment:{msg['messageId']}"
    return body


def traits_of(msg: dict) -> dict:
    traits = msg.get("traits")
    if not isinstance(traits, dict):
        traits = _context_traits(msg)
    return dict(traits) if isinstance(traits, dict) else {}
