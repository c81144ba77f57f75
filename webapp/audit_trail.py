"""Which requests go in the audit log and who made them. The entry is taken when the answer is made (status, latency)
and written as the request ends, in its own transaction, never failing it (docs/audit-log.md)."""

from __future__ import annotations

import logging

from flask import current_app, g, request

from models.audit_records import AuditEntry
from webapp.app_state import close_db, state
from webapp.services.audit_log import record

log = logging.getLogger("leadpulse.audit")
AUDITED_METHODS = frozenset(("POST", "PUT", "PATCH", "DELETE"))


def unaudited(view):
    """Mark a data-plane view (event ingestion, inbound webhooks) as left out of the audit log, accepted or refused:
    each stored event records itself, a row per delivery would double the busiest path's writes, and one per refused
    delivery would let anyone on the internet make us write. /metrics counts both, the request log has each."""
    view._audited = False
    return view


def audited(view):
    """Mark a GET that changes something (an OAuth callback completing an install) for the audit log."""
    view._audited = True
    return view


def attribute(*, org_id=None, unit_id=None, member_id=None, email=None) -> None:
    """Who a public view's request is for, as it learns it: the login (the member, or only the email tried), an OAuth
    callback (the OU its state names). Without it a public view's entry names nobody and no OU."""
    g._audit_who = dict(org_id=org_id, unit_id=unit_id, member_id=member_id, user_email=email)


def capture(status: int, latency_ms: float) -> None:
    """after_request (webapp/request_log.py): keep the entry of an audited request for the teardown to write."""
    try:
        if not _audited():
            return
        who = g.get("_audit_who") or _principal_who(g.get("principal"))
        g._audit_entry = AuditEntry(
            method=request.method,
            path=request.path,  # never the query string: an OAuth callback's code and state are in it
            status=status,
            latency_ms=latency_ms,
            ip=request.remote_addr,
            **who,
        )
    except Exception as exc:  # the answer is made: nothing here may change it
        log.warning("audit entry not taken: %s", type(exc).__name__)


def _audited() -> bool:
    """A view's mark, else its method: a request that matched no route (404, 405) changed nothing."""
    if request.url_rule is None:
        return False
    view = current_app.view_functions.get(request.endpoint)
    mark = getattr(view, "_audited", getattr(getattr(view, "view_class", None), "_audited", None))
    return request.method in AUDITED_METHODS if mark is None else mark


def _principal_who(principal) -> dict:
    if principal is None:
        return {}
    return dict(
        org_id=principal.org_id,
        unit_id=principal.unit_id,
        member_id=principal.member_id,
        credential_id=principal.credential_id,
    )


def install(app) -> None:
    @app.teardown_request
    def _write(_exc=None):
        entry = g.pop("_audit_entry", None)
        if entry is None:
            return
        close_db()  # the request's own transaction ends first: on SQLite it may hold the one write lock
        record(state(), entry)
