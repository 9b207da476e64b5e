"""Apply Alembic migrations, on start-up and from ``ability-gateway migrate``."""

from __future__ import annotations

import asyncio
from importlib import resources

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection

from ability_gateway.server.db import Database

MIGRATION_LOCK = 7_424_101  # an arbitrary, fixed advisory lock key


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("ability_gateway.server") / "migrations")
    )
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def upgrade_to_head(database: Database) -> None:
    """Bring the schema up to date (before the database serves anything else)."""
    if database.sync_writer is not None:
        engine = database.sync_writer

        def run() -> None:
            with engine.connect() as conn:
                _upgrade(conn)
                conn.commit()

        await asyncio.to_thread(run)
        return
    async with database.reader.connect() as conn:
        # Nodes starting together must not migrate at once: one waits for the other.
        await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
        await conn.commit()
        try:
            await conn.run_sync(_upgrade)
            await conn.commit()
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
            await conn.commit()
