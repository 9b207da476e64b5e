"""The job engine on a real SQLite file: claim, lease, heartbeat, fencing, sweeper, crashes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import create_token
from ability_gateway.server.db import db_now_ms
from ability_gateway.server.models import jobs, tasks
from ability_gateway.server.runner import claim as claiming
from ability_gateway.server.runner import queue, repository
from ability_gateway.server.runner.steps import StepContext, StepResult
from ability_gateway.server.state import GatewayState
from ability_gateway.server.tasks import repository as task_repository
from ability_gateway.server.tasks.steps import crash_writes
from tests.conftest import make_settings
from tests.support import first_run_done

CALLS: list[tuple[int, int]] = []
BEHAVIOUR: dict[str, Any] = {}


async def echo_step(ctx: StepContext) -> StepResult:
    CALLS.append((ctx.lease.id, ctx.lease.steps))
    mode = BEHAVIOUR.get("mode", "done")
    if mode == "raise":
        raise RuntimeError("boom")
    if mode == "sleep":
        await asyncio.sleep(BEHAVIOUR["seconds"])
    if mode == "again" and ctx.lease.steps < 3:
        return StepResult("queued", delay_s=0.05, payload={"n": ctx.lease.steps})
    return StepResult("done")


@pytest.fixture(autouse=True)
def _reset() -> None:
    CALLS.clear()
    BEHAVIOUR.clear()


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[GatewayState]:
    settings = make_settings(
        tmp_path,
        "http://127.0.0.1:1",
        runner_poll_seconds=0.05,
        sweep_seconds=0.1,
        lease_seconds=0.6,
        max_crashes=3,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: GatewayState = app.state.gateway
        state.runner.deps.jobs.add("test.echo", echo_step, on_crash=crash_writes)
        await first_run_done(state)
        yield state


async def enqueue(state: GatewayState, *, task_id: str | None = None, delay_ms: int = 0) -> int:
    job_id = await state.db.run_write(
        lambda conn: queue.enqueue(conn, "test.echo", task_id=task_id, delay_ms=delay_ms).id
    )
    state.runner.wake()
    return job_id


async def job_row(state: GatewayState, job_id: int) -> Any:
    async with state.db.read() as conn:
        return (await conn.execute(select(jobs).where(jobs.c.id == job_id))).mappings().one()


async def until(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def make_task(state: GatewayState) -> str:
    token = await create_token(state.db, "t")
    task_id = "task_test_" + token.id[-8:]
    await state.db.run_write(
        partial(
            task_repository.insert_task,
            values={
                "id": task_id,
                "token_id": token.id,
                "ability_id": "ability_coze_prompt_extract",
                "executor_id": "default",
                "status": "running",
                "request_id": "r",
                "inputs": {},
            },
            timeout_ms=600_000,
        )
    )
    return task_id


async def test_a_due_job_runs_once_and_is_done(engine: GatewayState) -> None:
    job_id = await enqueue(engine)
    await until(lambda: _state_is(engine, job_id, "done"))
    assert [(job_id, 1)] == CALLS
    row = await job_row(engine, job_id)
    assert row["lease_token"] is None
    assert row["steps"] == 1


async def test_a_job_is_not_run_before_it_is_due(engine: GatewayState) -> None:
    job_id = await enqueue(engine, delay_ms=60_000)
    await asyncio.sleep(0.3)
    assert CALLS == []
    assert (await job_row(engine, job_id))["state"] == "queued"


async def test_a_rescheduled_job_runs_again_later(engine: GatewayState) -> None:
    BEHAVIOUR["mode"] = "again"
    job_id = await enqueue(engine)
    await until(lambda: _state_is(engine, job_id, "done"))
    assert [steps for _, steps in CALLS] == [1, 2, 3]
    assert (await job_row(engine, job_id))["payload"] == {"n": 2}


async def test_a_finish_with_a_stale_token_changes_nothing(engine: GatewayState) -> None:
    await engine.runner.stop(grace_seconds=0)  # claim by hand
    job_id = await engine.db.run_write(lambda conn: queue.enqueue(conn, "test.echo").id)
    leases = await engine.db.run_write(
        partial(claiming.claim, owner="a", token="tok-a", ttl_ms=60_000, limit=10)
    )
    assert [lease.id for lease in leases] == [job_id]
    again = await engine.db.run_write(
        partial(claiming.claim, owner="b", token="tok-b", ttl_ms=60_000, limit=10)
    )
    assert again == []  # leased jobs are not claimed twice
    stale = await engine.db.run_write(
        partial(repository.finish, job_id=job_id, token="tok-b", state="done")
    )
    assert stale is False
    assert (await job_row(engine, job_id))["state"] == "running"
    assert await engine.db.run_write(
        partial(repository.finish, job_id=job_id, token="tok-a", state="done")
    )


async def test_an_expired_lease_is_swept_back_and_run_again(engine: GatewayState) -> None:
    job_id = await engine.db.run_write(
        lambda conn: (
            queue.enqueue(
                conn,
                "test.echo",
                task_id=None,
                lease=queue.LeaseRequest("dead-runner", "tok-dead", 100),
            ).id
        )
    )
    await until(lambda: _state_is(engine, job_id, "done"))
    row = await job_row(engine, job_id)
    assert row["crash_count"] == 1
    assert "dead-runner" in row["last_error"]
    assert [(job_id, 2)] == CALLS


async def test_a_job_whose_runner_crashed_three_times_fails_with_its_task(
    engine: GatewayState,
) -> None:
    task_id = await make_task(engine)
    job_id = await engine.db.run_write(
        lambda conn: (
            queue.enqueue(
                conn,
                "test.echo",
                task_id=task_id,
                lease=queue.LeaseRequest("dead-runner", "tok-dead", 100),
            ).id
        )
    )
    await engine.db.run_write(
        lambda conn: conn.execute(update(jobs).where(jobs.c.id == job_id).values(crash_count=2))
    )
    await until(lambda: _state_is(engine, job_id, "failed"))
    assert CALLS == []
    async with engine.db.read() as conn:
        task = (await conn.execute(select(tasks).where(tasks.c.id == task_id))).mappings().one()
    assert task["status"] == "failed"
    assert task["error_payload"]["code"] == 500
    assert "crashed 3 times" in task["error_payload"]["message"]


async def test_a_step_that_raises_is_retried_then_fails_its_task(engine: GatewayState) -> None:
    BEHAVIOUR["mode"] = "raise"
    task_id = await make_task(engine)
    job_id = await enqueue(engine, task_id=task_id)
    await until(lambda: _state_is(engine, job_id, "failed"), timeout=15)
    assert len(CALLS) == 3
    row = await job_row(engine, job_id)
    assert row["crash_count"] == 3
    assert "RuntimeError: boom" in row["last_error"]
    async with engine.db.read() as conn:
        status = (
            await conn.execute(select(tasks.c.status).where(tasks.c.id == task_id))
        ).scalar_one()
    assert status == "failed"


async def test_a_heartbeat_keeps_a_long_step_leased(engine: GatewayState) -> None:
    BEHAVIOUR.update(mode="sleep", seconds=1.5)  # 2.5 lease times
    job_id = await enqueue(engine)
    await until(lambda: _state_is(engine, job_id, "done"))
    row = await job_row(engine, job_id)
    assert row["crash_count"] == 0
    assert len(CALLS) == 1


async def test_a_canceled_job_stops_its_running_step(engine: GatewayState) -> None:
    BEHAVIOUR.update(mode="sleep", seconds=30)
    task_id = await make_task(engine)
    job_id = await enqueue(engine, task_id=task_id)
    await until(lambda: _state_is(engine, job_id, "running"))
    await engine.db.run_write(partial(repository.end_for_task, task_id=task_id, state="canceled"))
    # The heartbeat (every lease/3 = 0.2 s) notices and cancels the step.
    await until(lambda: _no_running_steps(engine), timeout=3)
    assert (await job_row(engine, job_id))["state"] == "canceled"


async def test_due_times_use_the_database_clock(engine: GatewayState) -> None:
    job_id = await enqueue(engine, delay_ms=60_000)
    async with engine.db.read() as conn:
        row = (
            await conn.execute(select(jobs.c.next_run_at - db_now_ms()).where(jobs.c.id == job_id))
        ).scalar_one()
    assert 55_000 < row <= 60_000


async def _state_is(state: GatewayState, job_id: int, expected: str) -> bool:
    return bool((await job_row(state, job_id))["state"] == expected)


async def _no_running_steps(state: GatewayState) -> bool:
    return not state.runner._running


async def test_a_crash_requeue_keeps_the_jobs_payload(engine: GatewayState) -> None:
    await engine.runner.stop(grace_seconds=0)
    job_id = await engine.db.run_write(
        lambda conn: queue.enqueue(conn, "test.echo", payload={"phase": "x"}).id
    )
    leases = await engine.db.run_write(
        partial(claiming.claim, owner="a", token="tok", ttl_ms=60_000, limit=1)
    )
    assert leases[0].payload == {"phase": "x"}
    assert await engine.db.run_write(
        partial(repository.finish, job_id=job_id, token="tok", state="queued", crashed=True)
    )
    row = await job_row(engine, job_id)
    assert row["payload"] == {"phase": "x"}
    assert row["crash_count"] == 1


async def test_a_graceful_stop_hands_running_jobs_back_without_a_crash(
    engine: GatewayState,
) -> None:
    BEHAVIOUR.update(mode="sleep", seconds=30)
    job_id = await enqueue(engine)
    await until(lambda: _state_is(engine, job_id, "running"))
    await engine.runner.stop(grace_seconds=0.1)
    row = await job_row(engine, job_id)
    assert row["state"] == "queued"
    assert row["crash_count"] == 0
    assert row["lease_token"] is None
