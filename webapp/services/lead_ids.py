"""Which lead ids the API may create: each one must be reachable, read and deleted, at /lead/{id} and its siblings."""

from __future__ import annotations

from marshmallow import ValidationError, validate

# Static path segments that sit where a lead id sits in some route (GET /events/export beside GET /events/{lead_id},
# POST /leads/merge beside /leads/{lead_id}): a lead with that id would be shadowed. tests/test_lead_ids.py derives
# them from the app's URL map and fails when a route adds one that is missing here.
RESERVED_LEAD_IDS = frozenset({"batch", "export", "merge", "scores", "search"})
DOT_SEGMENTS = frozenset({".", ".."})  # clients and proxies resolve them away before the request reaches us


def lead_id_problem(lead_id: str) -> str | None:
    """Why a lead id cannot be one URL path segment of our routes, or None when it can."""
    if "/" in lead_id:  # a client's %2F arrives decoded: the id would span two segments
        return "must not contain '/' (it could not be addressed at /lead/{id})"
    if lead_id in DOT_SEGMENTS:
        return "must not be '.' or '..' (it could not be addressed at /lead/{id})"
    if lead_id in RESERVED_LEAD_IDS:
        return f"'{lead_id}' is reserved: it names an API path ({', '.join(sorted(RESERVED_LEAD_IDS))} are reserved)"
    return None


def _addressable(lead_id: str) -> None:
    problem = lead_id_problem(lead_id)
    if problem:
        raise ValidationError(problem)


LEAD_ID_RULE = (  # what the OpenAPI document says of every lead id a client gives
    "1 to 200 characters, one URL path segment: no '/', not '.' or '..', and none of "
    + ", ".join(sorted(RESERVED_LEAD_IDS))
)
LEAD_ID = validate.And(validate.Length(min=1, max=200), _addressable)  # every id a client gives a new lead
