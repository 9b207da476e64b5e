"""Database access: a group-committing write path and an async read path (SQLAlchemy 2, Core).

Writes are plain functions of a synchronous :class:`~sqlalchemy.engine.Connection`
(``def insert_task(conn, ...)``), handed to :meth:`Database.run_write`:

* **SQLite** allows one writer at a time, and through aiosqlite every statement,
  BEGIN and COMMIT is a hop to another thread. So one writer thread owns the only
  write connection and runs whatever write functions are waiting *in one
  transaction* (``BEGIN IMMEDIATE`` … ``COMMIT``): group commit. If one function
  fails, the batch is rolled back and each function is run again alone, so only
  the guilty one fails. Write functions therefore must only touch the database (a log
  line of what a write did waits for its commit: ``logs.log_after_commit``).
* **PostgreSQL** runs each write function in its own transaction through
  ``AsyncConnection.run_sync`` on an ordinary pool.

Reads go through an async engine (aiosqlite / asyncpg); SQLite in WAL mode never
blocks them behind the writer.

Every timestamp is an integer of epoch milliseconds taken from the database
clock (:func:`db_now_ms`), so comparisons never mix clocks or text encodings.

A database that cannot be reached (connection refused or dropped, PostgreSQL shutting
down, SQLite locked by another process past the busy timeout) makes :meth:`Database.read`
and :meth:`Database.run_write` raise :class:`DatabaseUnavailable` (a 503 with
``Retry-After``), logged once per outage; any other failure (a bad statement, refused
data) is raised as it is, a bug.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy import BigInteger, Engine, create_engine, event
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from ability_gateway.server.errors import DatabaseUnavailable
from ability_gateway.server.logs import emit_on_commit

logger = logging.getLogger(__name__)

T = TypeVar("T")
WriteFn = Callable[[Connection], T]

# The longest pause of a background loop between looks at an unreachable database.
MAX_RETRY_PAUSE_SECONDS = 5.0
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


def storable_text(value: str | None) -> str | None:
    """Text that is not ours (Coze's answers, receivers' answers) made fit for a text column.

    PostgreSQL text refuses NUL, so it is written as the escape ``\\u0000``; such text is
    stored, never refused. JSON columns (the task payloads) need nothing: orjson writes NUL
    as that same escape, which PostgreSQL's ``json`` type keeps (``jsonb`` would refuse it,
    so those columns stay ``json``).
    """
    return None if value is None else value.replace("\x00", "\\u0000")


# PostgreSQL SQLSTATEs of a server that is there but will not serve now: admin_shutdown,
# crash_shutdown, cannot_connect_now ("the database system is shutting down"),
# too_many_connections. Class 08 (connection exceptions) counts as a whole.
_PG_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03", "53300"})
# SQLite primary result codes: SQLITE_BUSY ("database is locked"), SQLITE_LOCKED.
_SQLITE_BUSY = frozenset({5, 6})


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the database cannot be reached now, as opposed to a statement or
    its data being wrong (those stay errors: a 500 is a bug to fix, a 503 is a retry)."""
    current: BaseException | None = exc
    wrapped = False  # seen through a SQLAlchemy error: its causes are the driver's
    for _ in range(8):  # the wrapped driver error and its causes, not unrelated contexts
        if current is None:
            return False
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True  # the connection broke mid-statement
        if isinstance(current, PoolTimeout):
            return True  # no connection within the pool timeout
        # Refused, reset, timed out — when it is the driver's socket error (asyncpg raises
        # the builtin ones from connect), not any OSError raised inside a unit of work (an
        # egress refusal or an aiohttp error there is not the database's).
        if isinstance(current, OSError) and (
            wrapped or type(current).__module__ in ("builtins", "socket")
        ):
            return True
        wrapped = wrapped or isinstance(current, SQLAlchemyError)
        sqlstate = getattr(current, "sqlstate", None)
        if isinstance(sqlstate, str) and (sqlstate.startswith("08") or sqlstate in _PG_UNAVAILABLE):
            return True
        code = getattr(current, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _SQLITE_BUSY:
            return True
        orig = current.orig if isinstance(current, DBAPIError) else None
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _configure_sqlite(
    engine: Engine, *, immediate: bool, busy_timeout_ms: int, synchronous: str = "FULL"
) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so that BEGIN is ours.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # How long a statement waits for another process's lock before "database is locked".
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
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
            # One guilty write fails alone; a locked or unreachable database fails them all
            # at once (run alone, each would wait the busy timeout again).
            if len(batch) > 1 and not is_unavailable(exc):
                self.split_batches += 1
                for item in batch:
                    self._run([item])
                return
            for future, _ in batch:
                _resolve(future, exc=exc)
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

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        sqlite_synchronous: str = "FULL",
        sqlite_busy_timeout_ms: int = 30_000,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """``options``: execution options every connection carries (SQLAlchemy's, or our own,
        read by a repository with ``conn.get_execution_options()``)."""
        if sqlite_synchronous not in ("FULL", "NORMAL"):
            raise ValueError("sqlite_synchronous must be FULL or NORMAL")
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        # hide_parameters: bound values (callback headers, secrets) never reach logs or errors.
        common: dict[str, Any] = {
            "echo": echo,
            "json_serializer": _json_dumps,
            "hide_parameters": True,
            "execution_options": dict(options or {}),
        }
        self._writer: _SqliteWriter | None = None
        self._closed = False
        # When the current outage began (monotonic), None while the database answers; and
        # which of reads and writes failed in it (SQLite locked by another process still
        # reads), so that only their own success ends it.
        self._outage_since: float | None = None
        self._failing: set[str] = set()
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
            _configure_sqlite(
                sync_engine,
                immediate=True,
                busy_timeout_ms=sqlite_busy_timeout_ms,
                synchronous=sqlite_synchronous,
            )
            self.sync_writer: Engine | None = sync_engine
            self.reader: AsyncEngine = create_async_engine(
                url, pool_size=4, max_overflow=4, **common
            )
            _configure_sqlite(
                self.reader.sync_engine, immediate=False, busy_timeout_ms=sqlite_busy_timeout_ms
            )
            emit_on_commit(sync_engine)
        else:
            self.sync_writer = None
            self.reader = create_async_engine(
                url, pool_size=20, max_overflow=10, pool_pre_ping=True, **common
            )
            emit_on_commit(self.reader.sync_engine)

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
        """Run ``fn(conn)`` in a write transaction and return its result once committed.

        :class:`DatabaseUnavailable` when the database cannot be reached."""
        try:
            if self.is_sqlite:
                result = await self._sqlite_writer().submit(fn)
            else:
                async with self.reader.begin() as conn:
                    result = await conn.run_sync(fn)
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise self._unavailable(exc, "write") from exc
            raise
        self._available("write")
        return result

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read-only unit of work; :class:`DatabaseUnavailable` when it cannot be reached."""
        try:
            async with self.reader.connect() as conn:
                yield conn
        except DatabaseUnavailable:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise self._unavailable(exc, "read") from exc
            raise
        self._available("read")

    @property
    def outage_seconds(self) -> float | None:
        """How long the database has been unreachable, or None while it answers."""
        since = self._outage_since
        return None if since is None else time.monotonic() - since

    def retry_pause(self, minimum: float) -> float:
        """How long a background loop that found the database unavailable waits before it
        looks again: half the outage so far, at least ``minimum``, at most 5 s."""
        return min(max(minimum, (self.outage_seconds or 0.0) / 2), MAX_RETRY_PAUSE_SECONDS)

    def _unavailable(self, exc: BaseException, kind: str) -> DatabaseUnavailable:
        # Once per outage, not once per failed request, job claim or heartbeat.
        self._failing.add(kind)
        if self._outage_since is None:
            self._outage_since = time.monotonic()
            logger.error(
                "database unavailable (%s: %s); answering 503 until it is back",
                type(exc).__name__,
                str(exc).splitlines()[0][:200] if str(exc) else "",
            )
        return DatabaseUnavailable()

    def _available(self, kind: str) -> None:
        if not self._failing:
            return
        self._failing.discard(kind)
        if not self._failing and self._outage_since is not None:
            logger.warning(
                "database reachable again after %.1f s", time.monotonic() - self._outage_since
            )
            self._outage_since = None

    async def dispose(self) -> None:
        self._closed = True
        if self._writer is not None:
            await asyncio.to_thread(self._writer.stop)
            self._writer = None
        elif self.sync_writer is not None:
            self.sync_writer.dispose()
        await self.reader.dispose()
