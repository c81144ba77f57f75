"""Every resource blueprint, in the order they are registered."""

from webapp.resources import (
    admin,
    alert_settings,
    audit_logs,
    auth_routes,
    events,
    hubspot_routes,
    imports,
    ingest,
    lead,
    leads,
    levels,
    members,
    org_units,
    rate_limit_routes,
    root,
    rulesets,
    secrets_routes,
    slack_routes,
    stream,
    webhooks,
)


def all_blueprints():
    return [
        root.blp,
        auth_routes.blp,
        rate_limit_routes.blp,
        org_units.blp,
        members.blp,
        secrets_routes.blp,
        ingest.blp,
        events.blp,
        imports.blp,
        rulesets.blp,
        leads.blp,
        lead.blp,
        levels.blp,
        hubspot_routes.blp,
        alert_settings.blp,
        slack_routes.blp,
        admin.blp,
        audit_logs.blp,
        webhooks.blp,
        stream.blp,
    ]
