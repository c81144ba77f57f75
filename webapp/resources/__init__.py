"""Every resource blueprint, in the order they are registered."""


def all_blueprints():
    from webapp.resources import admin, alert_settings, events, imports, lead_profile, auth_routes, hubspot_routes, ingest, leads, levels, org_units, root, rulesets, secrets_routes, slack_routes, stream, webhooks

    return [
        root.blp,
        auth_routes.blp,
        org_units.blp,
        secrets_routes.blp,
        ingest.blp,
        events.blp,
        imports.blp,
        rulesets.blp,
        leads.blp,
        lead_profile.blp,
        levels.blp,
        hubspot_routes.blp,
        alert_settings.blp,
        slack_routes.blp,
        admin.blp,
        webhooks.blp,
        stream.blp,
    ]
