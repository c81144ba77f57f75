"""Tables and pure domain rules shared by the web app and the workers."""

from models import audit, events, hubspot, leads, levels, scoring, seed_records, slack, tenancy, webhooks  # noqa: F401  (register tables)
from models.base import Base  # noqa: F401
