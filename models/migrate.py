"""Applying the Alembic migrations in migrations/: the schema every process and the test suite run on."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from config import Settings

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(settings: Settings) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", settings.database_url.replace("%", "%%"))
    return cfg


def upgrade(settings: Settings) -> None:
    command.upgrade(alembic_config(settings), "head")
