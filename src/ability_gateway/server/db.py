"""Database access: a group-committing write path and an async read path (SQLAlchemy 2, Core).

Writes are plain functions of a synchronous :class:`~sqlalchemy.engine.Connection`
(``def insert_task(conn, ...)``), handed to :meth:`Database.run_write`:

* **SQLite** allows one writer at a time, and through aiosqlite every statement,
  BEGIN and COMMIT is a hop to another thread. So one writer thread owns the only
  write connection and runs whatever write functions are waiting *in one
  transaction* (``BEGIN IMMEDIATE`` … ``COMMIT``): group commit. If one function
  fails, the batch is rolled back and each function is run again alone, so only
  the guilty one fails. Write functions therefore must only touch the database.
* **PostgreSQL** runs each write function in its own transaction through
  ``AsyncConnection.run_sync`` on an ordinary pool.

Reads go through an async engine (aiosqlite / asyncpg); SQLite in WAL mode never
blocks them behind the writer.

Every timestamp is an integer of epoch milliseconds taken from the database
clock (:func:`db_now_ms`), so comparisons never mix clocks or text encodings.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import BigInteger, Engine, create_engine, event
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

logger = logging.getLogger(__name__)

T = TypeVar("T")
WriteFn = Callable[[Connection], T]

# Enough to absorb a burst from a few hundred concurrent requests, small enough that one
# transaction stays short.
MAX_BATCH = 256


class db_now_ms(FunctionElement[int]):
    """The database clock, in epoch milliseconds."""

    type = BigInteger()
    inherit_cache = True


@compiles(db_now_ms, "sqlite")
def _now_ms_sqlite(*_args: Any, **_kw: Any) -> str:
    return "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"


@compiles(db_now_ms, "postgresql")
def _now_ms_postgresql(*_args: Any, **_kw: Any) -> str:
    # now(): the transaction's start, stable within it, so due-time filters can use indexes.
    return "CAST(EXTRACT(EPOCH FROM now()) * 1000 AS BIGINT)"


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _configure_sqlite(engine: Engine, *, immediate: bool, synchronous: str = "FULL") -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so that BEGIN is ours.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        # FULL: a commit (a task we answered for) survives a power cut too, not only a crash
        # of the process. With group commit that is one fsync per batch.
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


_STOP = object()


class _SqliteWriter:
    """The one thread that writes to a SQLite file, committing waiting writes together."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Transactions attempted, and batches re-run one write at a time after a failure.
        self.transactions = 0
        self.split_batches = 0
        self._thread = threading.Thread(target=self._loop, name="sqlite-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: WriteFn[T]) -> asyncio.Future[T]:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put((future, fn))
        return future

    def stop(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=30)
        # Whatever arrived after the stop is refused, not left waiting forever.
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                _resolve(item[0], exc=RuntimeError("the database is closed"))
        if not self._thread.is_alive():
            self.engine.dispose()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            self._run(batch)

    def _run(self, batch: list[tuple[asyncio.Future[Any], WriteFn[Any]]]) -> None:
        results = []
        self.transactions += 1
        try:
            with self.engine.begin() as conn:
                for _, fn in batch:
                    results.append(fn(conn))
        except BaseException as exc:
            if len(batch) > 1:
                self.split_batches += 1
                for item in batch:
                    self._run([item])
                return
            _resolve(batch[0][0], exc=exc)
            return
        for (future, _), result in zip(batch, results, strict=True):
            _resolve(future, result=result)


def _resolve(
    future: asyncio.Future[Any], *, result: Any = None, exc: BaseException | None = None
) -> None:
    def apply() -> None:
        if future.done():  # the caller went away (cancelled); the write stands
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)

    try:
        future.get_loop().call_soon_threadsafe(apply)
    except RuntimeError:  # the loop is closed: nobody is waiting any more
        logger.debug("write finished after its event loop closed")


class Database:
    """One database: how to write to it and how to read from it."""

    def __init__(self, url: str, *, echo: bool = False, sqlite_synchronous: str = "FULL") -> None:
        if sqlite_synchronous not in ("FULL", "NORMAL"):
            raise ValueError("sqlite_synchronous must be FULL or NORMAL")
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        # hide_parameters: bound values (callback headers, secrets) never reach logs or errors.
        common: dict[str, Any] = {
            "echo": echo,
            "json_serializer": _json_dumps,
            "hide_parameters": True,
        }
        self._writer: _SqliteWriter | None = None
        self._closed = False
        if self.is_sqlite:
            database = self.url.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            sync_url = self.url.set(drivername="sqlite+pysqlite")
            # One connection, used by the migration at start and then by the writer thread.
            sync_engine = create_engine(
                sync_url,
                pool_size=1,
                max_overflow=0,
                connect_args={"check_same_thread": False},
                **common,
            )
            _configure_sqlite(sync_engine, immediate=True, synchronous=sqlite_synchronous)
            self.sync_writer: Engine | None = sync_engine
            self.reader: AsyncEngine = create_async_engine(
                url, pool_size=4, max_overflow=4, **common
            )
            _configure_sqlite(self.reader.sync_engine, immediate=False)
        else:
            self.sync_writer = None
            self.reader = create_async_engine(
                url, pool_size=20, max_overflow=10, pool_pre_ping=True, **common
            )

    @property
    def dialect(self) -> Dialect:
        return self.reader.dialect

    def _sqlite_writer(self) -> _SqliteWriter:
        if self._closed:
            raise RuntimeError("the database is closed")
        if self._writer is None:
            assert self.sync_writer is not None
            self._writer = _SqliteWriter(self.sync_writer)
        return self._writer

    async def run_write(self, fn: WriteFn[T]) -> T:
        """Run ``fn(conn)`` in a write transaction and return its result once committed."""
        if self.is_sqlite:
            return await self._sqlite_writer().submit(fn)
        async with self.reader.begin() as conn:
            return await conn.run_sync(fn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work."""
        async with self.reader.connect() as conn:
            yield conn

    async def dispose(self) -> None:
        self._closed = True
        if self._writer is not None:
            await asyncio.to_thread(self._writer.stop)
            self._writer = None
        elif self.sync_writer is not None:
            self.sync_writer.dispose()
        await self.reader.dispose()
