from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from ability_gateway.server.db import Database
from ability_gateway.server.migrate import upgrade_to_head
from ability_gateway.server.models import metadata


async def test_migrations_create_every_table_and_match_the_models(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")
    try:
        await upgrade_to_head(db)
        await upgrade_to_head(db)  # idempotent: a restart migrates nothing

        def check(conn: Connection) -> tuple[set[str], list[object]]:
            tables = set(inspect(conn).get_table_names())
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            return tables, diff

        async with db.read() as conn:
            tables, diff = await conn.run_sync(check)
        assert {"tokens", "tasks", "call_logs", "alembic_version"} <= tables
        assert diff == []
    finally:
        await db.dispose()
