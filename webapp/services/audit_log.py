"""Recording a request in the audit log without ever slowing or failing it (docs/audit-log.md)."""

from __future__ import annotations

import logging

from models.audit_records import AuditEntry, write_entry

log = logging.getLogger("leadpulse.audit")


def record(app_state, entry: AuditEntry) -> bool:
    """Write the entry in a short transaction of its own, on connections that give up quickly (models/db.py
    SIDE_POOLS). A refusal (a locked table, a timeout, no connection free, the database gone) is logged and the request
    goes on: the audit log never turns an answer into an error, nor holds it longer than those timeouts."""
    try:
        with app_state.AuditSession() as session, session.begin():
            write_entry(session, entry)
        return True
    except Exception as exc:
        reason = getattr(exc, "orig", None) or exc  # the driver's error class, never the statement and its values
        log.warning(
            "audit entry not written for %s %s (%s): %s", entry.method, entry.path, entry.status, type(reason).__name__
        )
        return False
