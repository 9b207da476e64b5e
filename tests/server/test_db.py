from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ability_gateway.server.db import Database, db_now_ms


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    await database.run_write(
        lambda conn: conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
    )
    await database.run_write(lambda conn: conn.execute(text("INSERT INTO counter VALUES (1, 0)")))
    yield database
    await database.dispose()


def increment(conn: Connection) -> int:
    n = int(conn.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one())
    conn.execute(text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})
    return n + 1


async def read_counter(db: Database) -> int:
    async with db.read() as conn:
        return int((await conn.execute(text("SELECT n FROM counter WHERE id = 1"))).scalar_one())


async def test_concurrent_read_modify_write_loses_no_update(db: Database) -> None:
    results = await asyncio.gather(*(db.run_write(increment) for _ in range(200)))
    assert sorted(results) == list(range(1, 201))
    assert await read_counter(db) == 200


async def test_waiting_writes_commit_together_and_a_failing_one_fails_alone(
    db: Database,
) -> None:
    gate = threading.Event()
    blocked = asyncio.ensure_future(db.run_write(lambda conn: gate.wait(10)))
    await asyncio.sleep(0.1)  # the writer thread is now inside the blocking write

    def duplicate(conn: Connection) -> None:
        conn.execute(text("INSERT INTO counter VALUES (1, 99)"))

    writes = [
        *(asyncio.ensure_future(db.run_write(increment)) for _ in range(20)),
        asyncio.ensure_future(db.run_write(duplicate)),
        *(asyncio.ensure_future(db.run_write(increment)) for _ in range(20)),
    ]
    await asyncio.sleep(0.1)  # all 41 are queued behind the blocked one
    writer = db._writer
    assert writer is not None
    before = writer.transactions
    gate.set()
    await blocked
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(failures) == 1
    assert isinstance(failures[0], IntegrityError)
    assert await read_counter(db) == 40
    # One batch of 41, split once, re-run one by one: 1 + 41 transactions.
    assert writer.split_batches == 1
    assert writer.transactions - before == 1 + 41


async def test_writes_after_dispose_are_refused(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'closed.db'}")
    await database.run_write(lambda conn: conn.execute(text("SELECT 1")))
    await database.dispose()
    with pytest.raises(RuntimeError, match="closed"):
        await database.run_write(lambda conn: conn.execute(text("SELECT 1")))


async def test_writes_from_another_process_wait_instead_of_failing(
    db: Database, tmp_path: Path
) -> None:
    other = Database(f"sqlite+aiosqlite:///{tmp_path / 'test.db'}")
    try:
        await asyncio.gather(*(d.run_write(increment) for d in [db, other] * 25))
    finally:
        await other.dispose()
    assert await read_counter(db) == 50


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(db: Database) -> None:
    async with db.read() as conn:
        assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
        assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one() == 30000

    def pragmas(conn: Connection) -> tuple[int, int]:
        timeout = conn.execute(text("PRAGMA busy_timeout")).scalar_one()
        synchronous = conn.execute(text("PRAGMA synchronous")).scalar_one()
        return int(timeout), int(synchronous)

    assert await db.run_write(pragmas) == (30000, 2)  # the writer: busy timeout, FULL


async def test_database_clock_is_epoch_milliseconds(db: Database) -> None:
    async with db.read() as conn:
        now = (await conn.execute(db_now_ms().select())).scalar_one()
    assert abs(now - time.time() * 1000) < 5_000


def test_an_os_error_raised_inside_a_unit_of_work_is_not_a_database_outage() -> None:
    from ability_gateway.server.db import is_unavailable
    from ability_gateway.server.egress import EgressRefused

    assert not is_unavailable(EgressRefused("refused: not a public address"))
    # asyncpg raises the builtin socket errors from connect: those still count…
    assert is_unavailable(ConnectionRefusedError(111, "Connect call failed"))
    import aiohttp

    assert not is_unavailable(aiohttp.ClientOSError(111, "Connect call failed"))  # …not aiohttp's
