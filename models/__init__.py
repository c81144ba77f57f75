"""Tables and pure domain rules shared by the web app and the workers."""
from models.base import Base  # noqa: F401
from models import tenancy, leads, events, scoring, levels, hubspot, slack, seed, webhooks  # noqa: F401  (register tables)
