"""slack-sdk's SQLAlchemy OAuth stores on our database, with bot and user tokens encrypted at rest."""

from __future__ import annotations

from dataclasses import dataclass

from slack_sdk.oauth.installation_store.sqlalchemy import SQLAlchemyInstallationStore
from slack_sdk.oauth.state_store.sqlalchemy import SQLAlchemyOAuthStateStore
from sqlalchemy import Text
from sqlalchemy.types import TypeDecorator

from integrations.secretbox import decrypt, encrypt
from models.db import get_engine
from models.integration_defaults import default_serves
from models.slack import TOKEN_COLUMNS, SlackConnection

TOKEN_PURPOSE = "slack-token"
CLIENT_SECRET_PURPOSE = "slack-client-secret"  # the organization's Slack app secret, encrypted at rest
STATE_TTL_SECONDS = 600


class EncryptedToken(TypeDecorator):
    """Fernet on the way in and out, so slack-sdk's own queries never see or store a plain token."""

    impl = Text
    cache_ok = True

    def __init__(self, secret_key: str):
        super().__init__()
        self.secret_key = secret_key

    def process_bind_param(self, value, dialect):
        return None if value is None else encrypt(self.secret_key, TOKEN_PURPOSE, value)

    def process_result_value(self, value, dialect):
        return None if value is None else decrypt(self.secret_key, TOKEN_PURPOSE, value)


class EncryptedInstallationStore(SQLAlchemyInstallationStore):
    def __init__(self, client_id: str, database_url: str, secret_key: str):
        super().__init__(client_id=client_id, engine=get_engine(database_url))
        for table in (self.installations, self.bots):
            for name in TOKEN_COLUMNS:
                if name in table.c:
                    table.c[name].type = EncryptedToken(secret_key)


def state_store(database_url: str) -> SQLAlchemyOAuthStateStore:
    return SQLAlchemyOAuthStateStore(expiration_seconds=STATE_TTL_SECONDS, engine=get_engine(database_url))


@dataclass
class SlackTarget:
    token: str | None
    token_source: str | None  # "install", "environment" or None
    kind: str | None
    target_id: str | None

    @property
    def ready(self) -> bool:
        return bool(self.token and self.target_id)


def resolve(session, unit_id: str, conn: SlackConnection | None, settings, secret_key: str) -> SlackTarget:
    """The OU's own install and target, else SLACK_BOT_TOKEN and SLACK_ALERT_CHANNEL where they serve the OU."""
    token, source = None, None
    if conn is not None and conn.team_id and conn.client_id:
        bot = EncryptedInstallationStore(conn.client_id, settings.database_url, secret_key).find_bot(
            enterprise_id=conn.enterprise_id, team_id=conn.team_id
        )
        if bot is not None and bot.bot_token:
            token, source = bot.bot_token, "install"
    defaults = (settings.slack_bot_token or settings.slack_alert_channel) and default_serves(session, settings, unit_id)
    if token is None and defaults and settings.slack_bot_token:
        token, source = settings.slack_bot_token, "environment"
    if conn is not None and conn.target_id:
        return SlackTarget(token, source, conn.target_kind, conn.target_id)
    if defaults and settings.slack_alert_channel:
        return SlackTarget(token, source, "channel", settings.slack_alert_channel)
    return SlackTarget(token, source, None, None)
