"""Use cases the web entry points share (views, the ingest lane, webhooks, imports); operations shared with the workers stay in models/."""
