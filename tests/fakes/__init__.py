"""Local fake HubSpot and Slack servers, so the real client libraries are tested over real HTTP."""

from .hubspot import FakeHubSpot
from .slack import FakeSlack

__all__ = ["FakeHubSpot", "FakeSlack"]
