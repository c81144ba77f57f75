"""The named time ranges the lead and event lists filter on, as [start, end) in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

RANGES = ("all", "today", "yesterday", "last_24h", "last_7d", "last_30d", "last_90d")


def range_start(name: str, now: datetime) -> tuple[datetime | None, datetime | None]:
    """Named ranges of the reference as [start, end) in UTC."""
    midnight = datetime.combine(now.date(), time.min, tzinfo=UTC)
    return {
        "all": (None, None),
        "today": (midnight, None),
        "yesterday": (midnight - timedelta(days=1), midnight),
        "last_24h": (now - timedelta(hours=24), None),
        "last_7d": (now - timedelta(days=7), None),
        "last_30d": (now - timedelta(days=30), None),
        "last_90d": (now - timedelta(days=90), None),
    }[name]
