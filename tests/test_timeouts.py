"""A job's timeout is recognised however it surfaces, so handlers never retry or swallow past it."""

from rq.timeouts import JobTimeoutException
from sqlalchemy.exc import OperationalError

from integrations.timeouts import timed_out


def test_a_timeout_is_seen_directly_or_behind_the_error_it_caused():
    assert timed_out(JobTimeoutException("job took too long"))
    try:
        try:
            raise JobTimeoutException("job took too long")
        except JobTimeoutException:  # the rollback that follows fails: the driver was mid-query
            raise OperationalError("ROLLBACK", {}, Exception("another command is already in progress"))
    except OperationalError as exc:
        assert timed_out(exc)
    assert not timed_out(OperationalError("SELECT 1", {}, Exception("deadlock detected")))
    assert not timed_out(None)
