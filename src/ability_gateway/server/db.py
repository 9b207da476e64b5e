"""Database access: a write path and a read path over SQLAlchemy 2 async (Core).

SQLite (the default) allows one writer at a time. Writes therefore go through a
single pooled connection that opens every transaction with ``BEGIN IMMEDIATE``
(a deferred transaction that reads then writes can fail with SQLITE_BUSY even
with a busy timeout, and concurrent read-modify-write loses updates). Reads use
their own small pool and never block the writer (WAL). On PostgreSQL both paths
share one ordinary pool.

Every timestamp is an integer of epoch milliseconds taken from the database
clock (:func:`db_now_ms`), so comparisons never mix clocks or text encodings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import BigInteger, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class db_now_ms(FunctionElement[int]):
    """The database clock, in epoch milliseconds."""

    type = BigInteger()
    inherit_cache = True


@compiles(db_now_ms, "sqlite")
def _now_ms_sqlite(*_args: Any, **_kw: Any) -> str:
    return "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"


@compiles(db_now_ms, "postgresql")
def _now_ms_postgresql(*_args: Any, **_kw: Any) -> str:
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class Database:
    """The two engines of one database and the transactions over them."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        common: dict[str, Any] = {"echo": echo, "json_serializer": _json_dumps}
        if self.is_sqlite:
            database = self.url.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # One writer connection: writers queue in the pool, not in busy loops.
            self.writer = create_async_engine(url, pool_size=1, max_overflow=0, **common)
            self.reader = create_async_engine(url, pool_size=4, max_overflow=4, **common)
            _configure_sqlite(self.writer, immediate=True)
            _configure_sqlite(self.reader, immediate=False)
        else:
            self.writer = create_async_engine(
                url, pool_size=20, max_overflow=10, pool_pre_ping=True, **common
            )
            self.reader = self.writer

    @property
    def dialect(self) -> Dialect:
        return self.writer.dialect

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A write transaction; commits on exit, rolls back on error."""
        async with self.writer.begin() as conn:
            yield conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work."""
        async with self.reader.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        await self.writer.dispose()
        if self.reader is not self.writer:
            await self.reader.dispose()


def _configure_sqlite(engine: AsyncEngine, *, immediate: bool) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so that BEGIN is ours.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
