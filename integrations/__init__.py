"""HubSpot, Slack and Segment adapters: the layer between the models and the outside services (docs/architecture.md)."""
