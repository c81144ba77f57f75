"""The periodic sweep: whatever Redis lost, the database still knows; re-kick it."""
from __future__ import annotations

import logging
import threading

from models.score_batch import has_pending
from worker.wakeup import kick_scoring

log = logging.getLogger("leadpulse.sweep")


def sweep_once(Session, redis, queue_name: str, slots: int) -> list[int]:
    """Kick every scoring slot that has pending events and no live job; returns slots kicked."""
    with Session() as s:
        waiting = [slot for slot in range(slots) if has_pending(s, slot, slots)]
    return kick_scoring(redis, queue_name, slots, only=waiting) if waiting else []


def start_sweeper(Session, redis, queue_name: str, slots: int, interval: float) -> threading.Event:
    """Run sweep_once now and every interval seconds in a daemon thread; set the event to stop it."""
    stop = threading.Event()

    def loop():
        while True:
            try:
                kicked = sweep_once(Session, redis, queue_name, slots)
                if kicked:
                    log.info("sweep re-kicked scoring slots %s", kicked)
            except Exception as exc:
                log.warning("sweep failed: %s", exc)
            if stop.wait(interval):
                return

    threading.Thread(target=loop, name="leadpulse-sweep", daemon=True).start()
    return stop
