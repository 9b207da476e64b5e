"""A database that cannot be reached answers 503 with Retry-After (not 500), and nothing is lost.

PostgreSQL's outages are played by a loopback proxy the test cuts (the machine's server keeps
running; the test database is created through the real port): refused connections,
"the database system is shutting down", connections dropped mid-statement. SQLite's is a
lock held by another connection past a small busy timeout. Each runs in its database's pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import create_token
from ability_gateway.server.config import Settings
from ability_gateway.server.db import Database
from ability_gateway.server.errors import DatabaseUnavailable
from ability_gateway.server.models import call_logs, jobs
from ability_gateway.server.state import GatewayState
from tests.conftest import make_settings
from tests.support import TEST_DATABASE, database_url, simulator_process
from tests.tcp_proxy import TcpProxy

PROMPT = "/api/abilities/ability_coze_prompt_extract/invoke"
TERMINAL = {"succeeded", "failed", "canceled", "timeout"}

on_postgresql = pytest.mark.skipif(
    TEST_DATABASE != "postgresql", reason="PostgreSQL pass only (GATEWAY_TEST_DATABASE)"
)
on_sqlite = pytest.mark.skipif(TEST_DATABASE != "sqlite", reason="SQLite pass only")


@pytest.fixture
async def proxied_url() -> AsyncIterator[tuple[TcpProxy, str]]:
    """A fresh test database (made through the real port) and its URL through a proxy."""
    real = database_url()
    assert real is not None
    proxy = TcpProxy("127.0.0.1", 5432)
    port = await proxy.start()
    yield proxy, real.replace("@127.0.0.1:5432/", f"@127.0.0.1:{port}/")
    await proxy.close()


@dataclass
class Served:
    client: httpx.AsyncClient
    headers: dict[str, str]
    state: GatewayState

    async def upstream_calls_and_crashes(self, task_id: str) -> tuple[int, int]:
        """How often Coze was called for the task, and how often its job crashed."""
        async with self.state.db.read() as conn:
            calls = await conn.execute(
                select(func.count()).select_from(call_logs).where(call_logs.c.task_id == task_id)
            )
            crashes = await conn.execute(
                select(jobs.c.crash_count).where(jobs.c.task_id == task_id)
            )
            return int(calls.scalar_one()), int(crashes.scalar_one())


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Served]:
    """The gateway in-process, with its runner, and the headers of a fresh token."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: GatewayState = app.state.gateway
        created = await create_token(state.db, "outage")
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw", timeout=60) as c:
            yield Served(c, {"Authorization": f"Bearer {created.token}"}, state)


def outage_settings(tmp_path: Path, sim_url: str, **overrides: Any) -> Settings:
    return make_settings(
        tmp_path,
        sim_url,
        runner_poll_seconds=0.05,
        # Longer than the outages: the result of a step that ends during one is kept for it.
        lease_seconds=6.0,
        auth_cache_seconds=0,  # every request looks its token up: every request meets the outage
        **overrides,
    )


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "2"
    body = response.json()
    assert set(body) == {"code", "message", "requestId"}
    assert body["code"] == 503
    assert body["message"] == "The database is unavailable; retry shortly"
    assert body["requestId"] == response.headers["x-request-id"]


async def accept_async(client: httpx.AsyncClient, headers: dict[str, str], image: str) -> str:
    """Invoke with respond-async; wait until the runner is working on the task."""
    response = await client.post(
        PROMPT, json={"inputs": {"url": image}}, headers={**headers, "Prefer": "respond-async"}
    )
    assert response.status_code == 202, response.text
    task_id = response.headers["location"].rsplit("/", 1)[1]
    for _ in range(200):
        task = await client.get(f"/api/ability_tasks/{task_id}", headers=headers)
        if task.json()["status"] == "running":
            return task_id
        await asyncio.sleep(0.02)
    raise AssertionError("the task never started running")


async def wait_ended(client: httpx.AsyncClient, headers: dict[str, str], task_id: str) -> Any:
    for _ in range(600):
        task = await client.get(f"/api/ability_tasks/{task_id}", headers=headers)
        assert task.status_code == 200, task.text
        if task.json()["status"] in TERMINAL:
            return task.json()
        await asyncio.sleep(0.05)
    raise AssertionError(f"task {task_id} did not end")


def outage_logs(caplog: pytest.LogCaptureFixture) -> dict[str, int]:
    counts = {"unavailable": 0, "again": 0, "claiming": 0, "sweeping": 0, "heartbeat": 0}
    for record in caplog.records:
        message = record.getMessage()
        for key, needle in (
            ("unavailable", "database unavailable"),
            ("again", "database reachable again"),
            ("claiming", "claiming jobs failed"),
            ("sweeping", "sweeping expired leases failed"),
            ("heartbeat", "heartbeat failed"),
        ):
            counts[key] += needle in message
    return counts


# --- the classification, on the databases themselves ----------------------------------------


@on_postgresql
@pytest.mark.parametrize("mode", ["refuse", "shutting_down"])
async def test_an_unreachable_postgresql_raises_database_unavailable(
    proxied_url: tuple[TcpProxy, str], mode: Any
) -> None:
    proxy, url = proxied_url
    db = Database(url)
    try:
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
        await proxy.cut(mode)
        with pytest.raises(DatabaseUnavailable):
            async with db.read() as conn:
                await conn.execute(text("SELECT 1"))
        with pytest.raises(DatabaseUnavailable):
            await db.run_write(lambda conn: conn.execute(text("SELECT 1")))
        assert db.outage_seconds is not None
        await proxy.restore()
        await db.run_write(lambda conn: conn.execute(text("SELECT 1")))
        assert db.outage_seconds is not None  # reads failed too: the outage ends with them
        async with db.read() as conn:
            await conn.execute(text("SELECT 1"))
        assert db.outage_seconds is None
    finally:
        await db.dispose()


@on_postgresql
async def test_a_connection_dropped_mid_statement_raises_database_unavailable(
    proxied_url: tuple[TcpProxy, str],
) -> None:
    proxy, url = proxied_url
    db = Database(url)
    try:

        async def cut_soon() -> None:
            await asyncio.sleep(0.3)
            await proxy.cut()

        cutting = asyncio.ensure_future(cut_soon())
        with pytest.raises(DatabaseUnavailable):
            async with db.read() as conn:
                await conn.execute(text("SELECT pg_sleep(5)"))
        await cutting
    finally:
        await db.dispose()


@on_postgresql
async def test_a_bad_statement_on_postgresql_stays_an_error() -> None:
    url = database_url()
    assert url is not None
    db = Database(url)
    try:
        with pytest.raises(ProgrammingError):
            async with db.read() as conn:
                await conn.execute(text("SELECT * FROM no_such_table"))
        assert db.outage_seconds is None
    finally:
        await db.dispose()


@on_sqlite
async def test_sqlite_locked_past_the_busy_timeout_raises_database_unavailable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    db = Database(f"sqlite+aiosqlite:///{path}", sqlite_busy_timeout_ms=100)
    try:
        await db.run_write(lambda conn: conn.execute(text("CREATE TABLE t (n INTEGER)")))
        lock = sqlite3.connect(path, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        try:
            writes = [
                db.run_write(lambda conn: conn.execute(text("INSERT INTO t VALUES (1)")))
                for _ in range(5)
            ]
            outcomes = await asyncio.gather(*writes, return_exceptions=True)
            assert all(isinstance(o, DatabaseUnavailable) for o in outcomes), outcomes
        finally:
            lock.rollback()
            lock.close()
        await db.run_write(lambda conn: conn.execute(text("INSERT INTO t VALUES (1)")))
        assert db.outage_seconds is None
        with pytest.raises(OperationalError):  # a bad statement is not an outage
            await db.run_write(lambda conn: conn.execute(text("SELECT * FROM no_such_table")))
    finally:
        await db.dispose()


# --- the gateway through an outage ---------------------------------------------------------


@on_postgresql
async def test_a_postgresql_outage_answers_503_then_recovers_and_loses_nothing(
    tmp_path: Path,
    proxied_url: tuple[TcpProxy, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy, url = proxied_url
    with simulator_process("--latency-ms", "1000") as sim:
        image = f"{sim}/files/samples/landscape.png"
        async with serving(outage_settings(tmp_path, sim, database_url=url)) as served:
            client, headers = served.client, served.headers
            task_id = await accept_async(client, headers, image)
            caplog.clear()
            caplog.set_level(logging.INFO)

            await proxy.cut("refuse")  # the Coze call of the task is in flight
            assert_unavailable(await client.get("/readyz"))
            assert_unavailable(await client.get("/api/abilities", headers=headers))
            assert_unavailable(await client.get("/api/ability_tasks", headers=headers))
            assert_unavailable(await client.get(f"/api/ability_tasks/{task_id}", headers=headers))
            body = {"inputs": {"url": image}}
            assert_unavailable(await client.post(PROMPT, json=body, headers=headers))
            await asyncio.sleep(1.0)  # the task's Coze call ends while the database is away
            await proxy.cut("shutting_down")
            before = proxy.connections
            assert_unavailable(await client.get("/api/ability_tasks", headers=headers))
            assert_unavailable(await client.post(PROMPT, json=body, headers=headers))
            await asyncio.sleep(1.0)
            during = outage_logs(caplog)
            # The runner backs off: a few looks a second, not one per poll (0.05 s: ~40).
            assert proxy.connections - before < 12

            await proxy.restore()
            listed = await client.get("/api/ability_tasks", headers=headers)
            assert listed.status_code == 200, listed.text
            assert [t["id"] for t in listed.json()["items"]] == [task_id]
            task = await wait_ended(client, headers, task_id)
            again = await client.post(PROMPT, json=body, headers=headers)
            # The result Coze gave during the outage was recorded once the database was back:
            # not asked for again, and the outage did not count as a crash of the job.
            assert await served.upstream_calls_and_crashes(task_id) == (1, 0)
    assert task["status"] == "succeeded", task
    assert again.status_code == 200, again.text
    # Once per outage, not once per request, claim, sweep or heartbeat.
    assert during == {"unavailable": 1, "again": 0, "claiming": 0, "sweeping": 0, "heartbeat": 0}
    assert outage_logs(caplog)["again"] == 1


@on_sqlite
async def test_a_locked_sqlite_answers_503_to_writes_then_recovers_and_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "gateway.db"
    settings_of: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{path}",
        "sqlite_busy_timeout_seconds": 0.2,
    }
    with simulator_process("--latency-ms", "1000") as sim:
        image = f"{sim}/files/samples/landscape.png"
        async with serving(outage_settings(tmp_path, sim, **settings_of)) as served:
            client, headers = served.client, served.headers
            task_id = await accept_async(client, headers, image)
            caplog.clear()
            caplog.set_level(logging.INFO)

            lock = sqlite3.connect(path, timeout=10, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            try:
                body = {"inputs": {"url": image}}
                assert_unavailable(await client.post(PROMPT, json=body, headers=headers))
                cancel = await client.post(f"/api/ability_tasks/{task_id}/cancel", headers=headers)
                assert_unavailable(cancel)
                # Reads go on (WAL): the task is still there, not finished.
                task = await client.get(f"/api/ability_tasks/{task_id}", headers=headers)
                assert task.status_code == 200, task.text
                assert task.json()["status"] == "running"
                await asyncio.sleep(1.5)  # the task's Coze call ends while writes are locked out
                during = outage_logs(caplog)
            finally:
                lock.rollback()
                lock.close()

            task = await wait_ended(client, headers, task_id)
            again = await client.post(PROMPT, json=body, headers=headers)
            # The result Coze gave during the outage was recorded once the database was back:
            # not asked for again, and the outage did not count as a crash of the job.
            assert await served.upstream_calls_and_crashes(task_id) == (1, 0)
    assert task["status"] == "succeeded", task
    assert again.status_code == 200, again.text
    assert during == {"unavailable": 1, "again": 0, "claiming": 0, "sweeping": 0, "heartbeat": 0}
