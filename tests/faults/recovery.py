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

    @property
    def limit(self) -> float:
        return LIMITS[self.kind]

    @property
    def ok(self) -> bool:
        return self.seconds is not None and self.seconds <= self.limit

    def __str__(self) -> str:
        took = f"{self.seconds:.1f} s" if self.seconds is not None else f"more than {self.watched:.0f} s"
        return f"{self.kind} after {self.fault}: {took} (limit {self.limit:.0f} s)"


def scoring_resumed(
    store: Store, slots: int, since: datetime, load_done: Callable[[], bool], watch: float
) -> float | None:
    """Seconds from `since` until every slot that owes events has scored one; None if not within `watch` seconds."""
    deadline = time.monotonic() + watch
    while time.monotonic() < deadline:
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


def slack_resumed(store: Store, since: datetime, watch: float) -> float | None:
    """Seconds from `since` until an alert is marked sent (or none is owed); None if not within `watch` seconds."""
    deadline = time.monotonic() + watch
    while time.monotonic() < deadline:
        sent = store.first_alert_sent_after(since)
        if sent is not None:
            return (sent - since).total_seconds()
        owed = store.outstanding()
        if owed is not None and not owed["unsent alerts"] and not owed["unexamined Hot entries"]:
            return (now() - since).total_seconds()
        time.sleep(0.1)
    return None
