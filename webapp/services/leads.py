"""Writes to a lead that several entry points share (the lead API, Segment identify, HubSpot property changes)."""

from __future__ import annotations

from models.base import utcnow
from models.lead_metadata import metadata_size
from models.leads import Lead
from webapp.app_state import state
from webapp.errors import ApiError


def check_metadata(metadata: dict, field: str = "metadata") -> None:
    """Every lead's metadata (created, replaced, merged, Segment traits, HubSpot properties) stays under one limit."""
    limit = state().settings.max_metadata_bytes
    if metadata_size(metadata) > limit:
        raise ApiError(
            413,
            "payload_too_large",
            f"{field}: the lead's metadata would exceed {limit // 1024} KB",
            {field: ["too large"]},
        )


def set_metadata(lead: Lead, metadata: dict, field: str = "metadata") -> None:
    """A lead's new metadata, checked against the limit first."""
    check_metadata(metadata, field)
    lead.metadata_, lead.updated_at = metadata, utcnow()
