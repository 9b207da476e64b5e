from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from ability_gateway.server.db import Database, db_now_ms


async def test_concurrent_read_modify_write_loses_no_update(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    try:
        async with db.write() as conn:
            await conn.execute(text("CREATE TABLE counter (n INTEGER NOT NULL)"))
            await conn.execute(text("INSERT INTO counter VALUES (0)"))

        async def increment() -> None:
            async with db.write() as conn:
                n = (await conn.execute(text("SELECT n FROM counter"))).scalar_one()
                await asyncio.sleep(0)
                await conn.execute(text("UPDATE counter SET n = :n"), {"n": n + 1})

        await asyncio.gather(*(increment() for _ in range(50)))
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT n FROM counter"))).scalar_one() == 50
    finally:
        await db.dispose()


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    try:
        async with db.read() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one() == 30000
    finally:
        await db.dispose()


async def test_database_clock_is_epoch_milliseconds(tmp_path: Path) -> None:
    import time

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 't.db'}")
    try:
        async with db.read() as conn:
            now = (await conn.execute(db_now_ms().select())).scalar_one()
        assert abs(now - time.time() * 1000) < 5_000
    finally:
        await db.dispose()
