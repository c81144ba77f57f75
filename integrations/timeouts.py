"""Telling a job's timeout apart from the errors code handles: a timeout must end the job, never be retried past."""

from __future__ import annotations

from rq.timeouts import BaseTimeoutException


def timed_out(exc: BaseException | None) -> bool:
    """True when exc is RQ's job timeout, or was raised while handling one (a rollback failing after the alarm)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, BaseTimeoutException):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
