"""HubSpot, Slack and outbound-webhook adapters (see issue 3)."""
