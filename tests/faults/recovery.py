"""Recovery clocks: from a fault to the first sign the workers took up again what the dead one held.

Scoring resumes when every scoring slot (lead partition) owing events has scored one after the fault; Slack resumes
when an alert is marked sent after it. Both are read from the timestamps the workers commit (scored_at, sent_at), so
the poll interval adds nothing to the figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from tests.faults.oracle import Store, now

LIMITS = {"scoring": 15.0, "slack": 30.0}  # the promise: seconds from a worker's death


@dataclass
class Recovery:
    fault: str
    kind: str  # "scoring" or "slack"
    seconds: float | None  # None: not within the time watched
    watched: float
    evidence: str = ""  # the workers' logs and the Redis and PostgreSQL state when the limit passed unmet

    @property
    def limit(self) -> float:
        return LIMITS[self.kind]

    @property
    def ok(self) -> bool:
        return self.seconds is not None and self.seconds <= self.limit

    def __str__(self) -> str:
        took = f"{self.seconds:.1f} s" if self.seconds is not None else f"more than {self.watched:.0f} s"
        return f"{self.kind} after {self.fault}: {took} (limit {self.limit:.0f} s)"


class Overdue:
    """Calls `report` once, when the limit has passed since the fault without a recovery: the state of the moment,
    for the failure message (read later, the stall is over and its cause gone)."""

    def __init__(self, since: datetime, limit: float, report: Callable[[], str] | None) -> None:
        self.since, self.limit, self.report = since, limit, report
        self.evidence = ""

    def check(self) -> None:
        if self.report is not None and not self.evidence and (now() - self.since).total_seconds() > self.limit:
            try:
                self.evidence = self.report()
            except Exception as exc:  # a fault in progress (a server down) must not hide the figure
                self.evidence = f"(the state could not be read: {exc.__class__.__name__}: {exc})"


def scoring_resumed(
    store: Store, slots: int, since: datetime, load_done: Callable[[], bool], watch: float, overdue: Overdue
) -> float | None:
    """Seconds from `since` until every slot that owes events has scored one; None if not within `watch` seconds."""
    deadline = time.monotonic() + watch
    while time.monotonic() < deadline:
        overdue.check()
        state = store.slots(slots, since)
        if state is not None:
            waits, waiting = [], False
            for slot in range(slots):
                pending, resumed = state.get(slot, (0, None))
                if resumed is not None:
                    waits.append((resumed - since).total_seconds())
                elif pending or not load_done():  # owes events, or will once the client sends more
                    waiting = True
            if not waiting:
                return max(waits, default=0.0)
        time.sleep(0.1)  # polling the database; the figure comes from scored_at, not from this interval
    return None


def slack_resumed(store: Store, since: datetime, watch: float, overdue: Overdue) -> float | None:
    """Seconds from `since` until an alert is marked sent (or none is owed); None if not within `watch` seconds."""
    deadline = time.monotonic() + watch
    while time.monotonic() < deadline:
        overdue.check()
        sent = store.first_alert_sent_after(since)
        if sent is not None:
            return (sent - since).total_seconds()
        owed = store.outstanding()
        if owed is not None and not owed["unsent alerts"] and not owed["unexamined Hot entries"]:
            return (now() - since).total_seconds()
        time.sleep(0.1)
    return None
