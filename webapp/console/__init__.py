"""The console at /app: server-rendered pages for members on the same services as the API, every asset served by the
app, htmx as a progressive enhancement (docs/console.md)."""

from __future__ import annotations

from datetime import UTC, datetime

from webapp.console import (  # noqa: F401  (each registers its pages)
    access_pages,
    errors,
    integration_pages,
    lead_pages,
    level_pages,
    member_pages,
    scoring_pages,
    session_pages,
)
from webapp.console.base import bp


def when(value: datetime | None) -> str:
    """A time as a person reads it in a table: UTC, to the minute."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "—"


def day(value: datetime, now: datetime | None = None) -> str:
    """A date as a sentence says it: "3 March", with the year only when it is not this one."""
    value, now = value.astimezone(UTC), (now or datetime.now(UTC))
    return f"{value.day} {value:%B}" + (f" {value.year}" if value.year != now.year else "")


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago, roughly: what a glance at the Leads table needs."""
    if value is None:
        return "never"
    seconds = int(((now or datetime.now(UTC)) - value).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return "just now"


def install(app) -> None:
    app.register_blueprint(bp)
    app.add_template_filter(when, "when")
    app.add_template_filter(ago, "ago")
    app.add_template_filter(day, "day")
    errors.install(app)
