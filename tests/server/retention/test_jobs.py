"""Retention: finished tasks older than ``GATEWAY_RETENTION_DAYS`` go, with their call logs,
callback attempts, media links and idempotency keys, in batches; a task still delivering its
callback, a recent one and everything else stay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import create_token
from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import (
    call_logs,
    deliveries,
    idempotency_keys,
    jobs,
    quota_counters,
    tasks,
)
from ability_gateway.server.retention import jobs as retention
from ability_gateway.server.runner.repository import Lease
from ability_gateway.server.runner.steps import StepContext
from ability_gateway.server.state import GatewayState
from tests.conftest import make_settings
from tests.support import first_run_done

PROMPT = "ability_coze_prompt_extract"
DAY_MS = 86_400_000


async def count(state: GatewayState, table: Any, *where: Any) -> int:
    async with state.db.read() as conn:
        return int(
            (await conn.execute(select(func.count()).select_from(table).where(*where))).scalar_one()
        )


async def age(state: GatewayState, task_id: str, days: float) -> None:
    def write(conn: Any) -> None:
        conn.execute(
            update(tasks)
            .where(tasks.c.id == task_id)
            .values(finished_at=tasks.c.finished_at - int(days * DAY_MS))
        )
        conn.execute(
            update(call_logs)
            .where(call_logs.c.task_id == task_id)
            .values(created_at=call_logs.c.created_at - int(days * DAY_MS))
        )

    await state.db.run_write(write)


async def step(state: GatewayState) -> Any:
    lease = Lease(1, retention.RETENTION_JOB, None, {}, "t", 1, 0, 0)
    return await retention.forget_old_data(StepContext(state.services, lease, "n"))


@pytest.fixture
async def gateway_on(tmp_path: Path, sim_url: str) -> Any:
    app = create_app(make_settings(tmp_path, sim_url, retention_days=30))
    async with app.router.lifespan_context(app):
        await first_run_done(app.state.gateway)
        yield app


async def test_old_finished_tasks_go_with_what_hangs_off_them(
    gateway_on: Any, sample_image: str
) -> None:
    state: GatewayState = gateway_on.state.gateway
    token = await create_token(state.db, "r")
    headers = {"Authorization": f"Bearer {token.token}"}
    transport = httpx.ASGITransport(app=gateway_on)
    ids = []
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        for n in range(3):
            response = await c.post(
                f"/api/abilities/{PROMPT}/invoke",
                json={"inputs": {"url": f"{sample_image}?{n}"}},
                headers={**headers, "Idempotency-Key": f"key-{n}"},
            )
            ids.append(response.json()["metadata"]["taskId"])
    old, kept_recent, delivering = ids
    await age(state, old, 31)
    await age(state, delivering, 31)
    # A callback still being delivered keeps its task (and it is not this job's to end).
    await state.db.run_write(
        lambda conn: conn.execute(
            deliveries.insert().values(
                id="msg_pending",
                task_id=delivering,
                token_id=token.id,
                url="http://127.0.0.1:9/cb",
                body="{}",
                state="pending",
                attempts=0,
                created_at=0,
                updated_at=0,
            )
        )
    )
    assert await count(state, jobs, jobs.c.kind == retention.RETENTION_JOB) == 1  # scheduled
    result = await step(state)
    assert result.state == "queued"
    assert result.payload == {"lastTasks": 1, "lastLogs": 0, "lastQuotaCounters": 0}
    assert await count(state, tasks, tasks.c.id == old) == 0
    assert await count(state, call_logs, call_logs.c.task_id == old) == 0
    assert await count(state, idempotency_keys, idempotency_keys.c.task_id == old) == 0
    assert await count(state, jobs, jobs.c.task_id == old) == 0
    for kept in (kept_recent, delivering):
        assert await count(state, tasks, tasks.c.id == kept) == 1
        assert await count(state, call_logs, call_logs.c.task_id == kept) == 1


async def test_batches_go_on_at_once_while_there_is_more(
    gateway_on: Any, sample_image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    state: GatewayState = gateway_on.state.gateway
    token = await create_token(state.db, "r")
    transport = httpx.ASGITransport(app=gateway_on)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        for n in range(3):
            response = await c.post(
                f"/api/abilities/{PROMPT}/invoke",
                json={"inputs": {"url": f"{sample_image}?b{n}"}},
                headers={"Authorization": f"Bearer {token.token}"},
            )
            await age(state, response.json()["metadata"]["taskId"], 40)
    monkeypatch.setattr(retention, "BATCH", 2)
    first = await step(state)
    assert (first.payload["lastTasks"], first.delay_s) == (2, 0.0)
    second = await step(state)
    assert second.payload["lastTasks"] == 1
    assert second.delay_s == retention.EVERY_SECONDS


async def test_by_default_tasks_stay_and_only_quota_counters_of_past_windows_go(
    app: Any, sample_image: str
) -> None:
    state: GatewayState = app.state.gateway
    assert state.settings.retention_days == 0
    await first_run_done(state)  # the job runs without GATEWAY_RETENTION_DAYS too
    token = await create_token(state.db, "r")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
        done = await c.post(
            f"/api/abilities/{PROMPT}/invoke",
            json={"inputs": {"url": sample_image, "shuru": "kept"}},
            headers={"Authorization": f"Bearer {token.token}"},
        )
    assert done.status_code == 200, done.text
    await age(state, done.json()["metadata"]["taskId"], 10_000)
    at = await state.db.run_write(lambda conn: int(conn.execute(select(db_now_ms())).scalar_one()))
    old = {"token_id": "t1", "scope": "*", "window_start_ms": at - 3 * DAY_MS, "n": 5}
    await state.db.run_write(lambda conn: conn.execute(quota_counters.insert(), [old]))
    result = await step(state)
    assert (result.state, result.delay_s) == ("queued", retention.EVERY_SECONDS)
    assert result.payload == {"lastTasks": 0, "lastLogs": 0, "lastQuotaCounters": 1}
    assert await count(state, tasks) == 1
    assert await count(state, call_logs) == 1


async def test_quota_counters_of_windows_that_are_over_go(gateway_on: Any) -> None:
    state: GatewayState = gateway_on.state.gateway

    def now(conn: Any) -> int:
        return int(conn.execute(select(db_now_ms())).scalar_one())

    at = await state.db.run_write(now)
    rows = [  # a window started 3 days ago (over), yesterday's and today's (kept)
        {"token_id": "t1", "scope": "*", "window_start_ms": at - 3 * DAY_MS, "n": 5},
        {"token_id": "t1", "scope": "*", "window_start_ms": at - DAY_MS, "n": 4},
        {"token_id": "t1", "scope": PROMPT, "window_start_ms": at, "n": 1},
    ]
    await state.db.run_write(lambda conn: conn.execute(quota_counters.insert(), rows))
    result = await step(state)
    left = await count(state, quota_counters)
    assert (result.payload["lastQuotaCounters"], left) == (1, 2)
    kept = quota_counters.c.window_start_ms >= at - DAY_MS
    assert await count(state, quota_counters, kept) == 2
