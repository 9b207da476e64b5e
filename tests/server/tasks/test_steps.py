"""The task state machine (tasks/steps.py) driven directly: a scripted fake executor, a real
database, an injected clock, no HTTP. Most tests run ``run_task`` on a job they leased, at a
``now`` they choose, and apply the step's writes as the runner would; the last ones hand the
step to a real (unstarted) ``Runner`` for what only it does: fencing and crash counting.
The black-box HTTP tests stay the safety net."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select, update

from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import Principal, create_token
from ability_gateway.server.executors.registry import ExecutorRegistry
from ability_gateway.server.models import call_logs, jobs, tasks
from ability_gateway.server.providers.coze.client import CozeCall, CozeExecutor, RunOutcome
from ability_gateway.server.runner.claim import claim
from ability_gateway.server.runner.queue import enqueue
from ability_gateway.server.runner.repository import Lease
from ability_gateway.server.runner.runner import Runner, RunnerDeps
from ability_gateway.server.runner.steps import JobRegistry, StepContext, StepResult
from ability_gateway.server.state import GatewayState, Services
from ability_gateway.server.tasks import repository
from ability_gateway.server.tasks.service import cancel_task, complete_external_job
from ability_gateway.server.tasks.steps import TASK_JOB, register, run_task
from tests.conftest import make_settings

PROMPT = "ability_coze_prompt_extract"
UPSCALE = "ability_coze_upscale_8k"  # cozeAsync: polls the run history when allowed
PATTERN = "ability_coze_pattern_extract"  # an external job, resolved by a query workflow


class FakeExecutor(CozeExecutor):
    """Answers each kind of call from a script, and records what it was asked."""

    def __init__(self, *, allow_async: bool = False) -> None:
        super().__init__("fake", "http://127.0.0.1:9", "pat_fake", allow_async=allow_async)
        self.runs: list[RunOutcome] = []
        self.histories: list[CozeCall] = []
        self.asked: list[tuple[str, Any]] = []

    async def run_workflow(
        self, workflow_id: str, parameters: dict[str, Any], *, deadline: float
    ) -> RunOutcome:
        self.asked.append(("run", workflow_id))
        return self.runs.pop(0)

    async def submit_async(
        self, workflow_id: str, parameters: dict[str, Any], *, deadline: float
    ) -> RunOutcome:
        self.asked.append(("submit", workflow_id))
        return self.runs.pop(0)

    async def get_run_history(
        self, workflow_id: str, execute_id: str, *, timeout: float
    ) -> CozeCall:
        self.asked.append(("history", execute_id))
        return self.histories.pop(0)


def call(code: int | None, data: Any = None, executor: str = "fake", **fields: Any) -> CozeCall:
    response = None if code is None else {"code": code, "msg": "", "data": data, **fields}
    return CozeCall(
        operation="workflow.run",
        workflow_id="w",
        request_body=None,
        http_status=200 if code is not None else None,
        code=code,
        response=response,
        execute_id=fields.get("execute_id"),
        debug_url=fields.get("debug_url"),
        executor_id=executor,
        error=None if code is not None else "no answer within 1.0 s",
    )


def outcome(kind: str, *calls: CozeCall) -> RunOutcome:
    return RunOutcome(kind=kind, calls=list(calls))  # type: ignore[arg-type]


@dataclasses.dataclass
class Machine:
    state: GatewayState
    services: Services
    executor: FakeExecutor
    token_id: str
    now_ms: int = 0  # the clock the next step is given (set when a task is made)
    job: int = 0

    def advance(self, seconds: float) -> None:
        self.now_ms += int(seconds * 1000)

    def with_executors(self, *executors: CozeExecutor) -> None:
        """Put these accounts beside the scripted one (failover)."""
        registry = ExecutorRegistry([self.executor, *executors])
        self.services = dataclasses.replace(self.services, executors=registry)
        self.state = dataclasses.replace(self.state, services=self.services)

    async def task(self, ability_id: str, inputs: dict[str, Any], timeout_ms: int = 60_000) -> str:
        task_id = f"task_{len(self.executor.asked)}_{id(inputs)}"

        def accept(conn: Any) -> int:
            repository.insert_task(
                conn,
                {
                    "id": task_id,
                    "token_id": self.token_id,
                    "ability_id": ability_id,
                    "executor_id": "fake",
                    "status": "queued",
                    "request_id": "req",
                    "inputs": inputs,
                    "client_metadata": None,
                    "callback_url": None,
                    "callback_headers": None,
                },
                timeout_ms,
            )
            return enqueue(conn, TASK_JOB, task_id=task_id, concurrency_key="fake").id

        self.job = await self.services.db.run_write(accept)
        self.now_ms = (await self.row(task_id)).created_at
        return task_id

    async def step(self, task_id: str, payload: dict[str, Any] | None = None) -> StepResult:
        lease = Lease(
            id=self.job,
            kind=TASK_JOB,
            task_id=task_id,
            payload=payload or {"phase": "start"},
            token="t",
            steps=1,
            crash_count=0,
            now_ms=self.now_ms,
        )
        result = await run_task(StepContext(self.services, lease, "node-test"))
        if result.writes is not None:
            await self.services.db.run_write(result.writes)
        return result

    async def row(self, task_id: str) -> Any:
        async with self.services.db.read() as conn:
            return (await conn.execute(select(tasks).where(tasks.c.id == task_id))).mappings().one()

    async def logs(self, task_id: str) -> list[Any]:
        async with self.services.db.read() as conn:
            return (
                await conn.execute(select(call_logs).where(call_logs.c.task_id == task_id))
            ).all()


@pytest.fixture(params=[False, True], ids=["sync-plan", "async-plan"])
async def machine(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Machine]:
    settings = make_settings(tmp_path, "http://127.0.0.1:9", runner_enabled=False)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state = app.state.gateway
        executor = FakeExecutor(allow_async=request.param)
        services = dataclasses.replace(state.services, executors=ExecutorRegistry([executor]))
        token = await create_token(services.db, "steps")
        yield Machine(dataclasses.replace(state, services=services), services, executor, token.id)


async def test_a_sync_run_ends_the_task_with_its_text(machine: Machine) -> None:
    machine.executor.runs.append(
        outcome("succeeded", call(0, orjson.dumps({"output": "a watercolour"}).decode()))
    )
    task_id = await machine.task(PROMPT, {"url": "https://img.example.org/a.png"})
    result = await machine.step(task_id)
    row = await machine.row(task_id)
    assert result.state == "done"
    assert row.status == "succeeded"
    assert row.result_payload["texts"] == ["a watercolour"]
    assert [log.operation for log in await machine.logs(task_id)] == ["workflow.run"]


async def test_a_workflow_error_fails_the_task_with_cozes_code(machine: Machine) -> None:
    machine.executor.runs.append(outcome("workflow_error", call(720701013, None)))
    task_id = await machine.task(PROMPT, {"url": "https://img.example.org/a.png"})
    result = await machine.step(task_id)
    row = await machine.row(task_id)
    assert result.state == "done"
    assert (row.status, row.error_payload["code"]) == ("failed", 720701013)


async def test_no_answer_from_coze_fails_the_task_visibly(machine: Machine) -> None:
    machine.executor.runs.append(outcome("transport_error", call(None)))
    task_id = await machine.task(PROMPT, {"url": "https://img.example.org/a.png"})
    await machine.step(task_id)
    row = await machine.row(task_id)
    assert row.status == "failed"
    assert row.error_payload["code"] == 502


async def test_a_task_past_its_deadline_times_out_without_calling(machine: Machine) -> None:
    task_id = await machine.task(
        PROMPT, {"url": "https://img.example.org/a.png"}, timeout_ms=60_000
    )
    machine.advance(60.001)  # the clock the step is given, not a sleep
    await machine.step(task_id)
    assert (await machine.row(task_id)).status == "timeout"
    assert machine.executor.asked == []


async def test_a_step_just_before_the_deadline_still_runs(machine: Machine) -> None:
    machine.executor.runs.append(outcome("succeeded", call(0, '{"output": "late"}')))
    task_id = await machine.task(
        PROMPT, {"url": "https://img.example.org/a.png"}, timeout_ms=60_000
    )
    machine.advance(59.9)
    await machine.step(task_id)
    assert (await machine.row(task_id)).status == "succeeded"


async def test_a_polled_run_that_outlives_the_deadline_times_out(machine: Machine) -> None:
    ex = machine.executor
    if not ex.allow_async:
        pytest.skip("sync plan")
    ex.runs.append(outcome("succeeded", call(0, None, execute_id="e1")))
    task_id = await machine.task(UPSCALE, {"url": "https://img.example.org/a.png", "bianchang": 64})
    submitted = await machine.step(task_id)
    ex.histories.append(call(0, [{"execute_status": "Running"}]))
    machine.advance(10)
    running = await machine.step(task_id, submitted.payload)
    assert running.state == "queued"
    assert running.delay_s <= 1.0
    machine.advance(1_000_000)
    await machine.step(task_id, running.payload)
    row = await machine.row(task_id)
    assert row.status == "timeout"
    assert [kind for kind, _ in ex.asked] == ["submit", "history"]


async def test_a_canceled_task_is_not_run(machine: Machine) -> None:
    task_id = await machine.task(PROMPT, {"url": "https://img.example.org/a.png"})
    await machine.services.db.run_write(
        lambda conn: repository.cancel_task(conn, task_id, machine.token_id)
    )
    result = await machine.step(task_id)
    assert result.state == "done"
    assert machine.executor.asked == []


async def test_an_async_plan_submits_then_polls_the_run_history(machine: Machine) -> None:
    ex = machine.executor
    if not ex.allow_async:
        pytest.skip("the account's plan has no is_async: a sync run instead")
    ex.runs.append(outcome("succeeded", call(0, None, execute_id="e1", debug_url="d")))
    task_id = await machine.task(UPSCALE, {"url": "https://img.example.org/a.png", "bianchang": 64})
    submitted = await machine.step(task_id)
    assert (submitted.state, submitted.payload) == (
        "queued",
        {"phase": "coze_poll", "executeId": "e1", "debugUrl": "d", "delay": 1.0},
    )
    ex.histories.append(call(0, [{"execute_status": "Running"}]))
    running = await machine.step(task_id, submitted.payload)
    assert running.state == "queued"
    assert running.payload is not None
    assert running.payload["delay"] == 1.5  # polls back off
    ex.histories.append(call(4013))  # throttled: slower still, not a failure
    throttled = await machine.step(task_id, running.payload)
    assert throttled.state == "queued"
    assert throttled.payload is not None
    assert throttled.payload["delay"] == 3.0
    done = {"Output": orjson.dumps({"output": "https://127.0.0.1:9/out.png"}).decode()}
    ex.histories.append(
        call(0, [{"execute_status": "Success", "output": orjson.dumps(done).decode()}])
    )
    finished = await machine.step(task_id, throttled.payload)
    row = await machine.row(task_id)
    assert finished.state == "done"
    assert row.status == "succeeded"
    assert row.result_payload["images"][0]["sourceUrl"] == "https://127.0.0.1:9/out.png"
    assert [kind for kind, _ in ex.asked] == ["submit", "history", "history", "history"]


async def test_a_failed_async_run_fails_the_task(machine: Machine) -> None:
    ex = machine.executor
    if not ex.allow_async:
        pytest.skip("sync plan")
    ex.runs.append(outcome("succeeded", call(0, None, execute_id="e1")))
    task_id = await machine.task(UPSCALE, {"url": "https://img.example.org/a.png", "bianchang": 64})
    submitted = await machine.step(task_id)
    ex.histories.append(call(0, [{"execute_status": "Fail", "error_code": "4200"}]))
    await machine.step(task_id, submitted.payload)
    row = await machine.row(task_id)
    assert (row.status, row.error_payload["code"]) == ("failed", 4200)


async def test_an_external_job_is_resolved_by_its_query_workflow(machine: Machine) -> None:
    ex = machine.executor
    ex.runs.append(outcome("succeeded", call(0, orjson.dumps({"output": "job-42"}).decode())))
    task_id = await machine.task(
        PATTERN, {"url": "https://img.example.org/a.png", "height": 512, "width": 512}
    )
    started = await machine.step(task_id)
    assert started.state == "queued"
    assert started.payload is not None
    assert (started.payload["phase"], started.payload["externalId"]) == ("external", "job-42")
    assert (await machine.row(task_id)).external_id == "job-42"
    pending = orjson.dumps({"output": orjson.dumps({"status": "running"}).decode()}).decode()
    ex.runs.append(outcome("succeeded", call(0, pending)))
    waiting = await machine.step(task_id, started.payload)
    assert waiting.state == "queued"  # asks again later
    report = {"status": "succeeded", "images": ["https://127.0.0.1:9/p.png"]}
    ready = orjson.dumps({"output": orjson.dumps(report).decode()}).decode()
    ex.runs.append(outcome("succeeded", call(0, ready)))
    finished = await machine.step(task_id, waiting.payload)
    row = await machine.row(task_id)
    assert finished.state == "done"
    assert row.status == "succeeded"
    assert row.result_payload["images"][0]["sourceUrl"] == "https://127.0.0.1:9/p.png"
    assert row.result_payload["metadata"]["externalJobId"] == "job-42"


async def test_a_query_that_fails_is_not_the_job_failing(machine: Machine) -> None:
    ex = machine.executor
    ex.runs.append(outcome("succeeded", call(0, orjson.dumps({"output": "job-7"}).decode())))
    task_id = await machine.task(
        PATTERN, {"url": "https://img.example.org/a.png", "height": 512, "width": 512}
    )
    started = await machine.step(task_id)
    ex.runs.append(outcome("transport_error", call(None)))
    again = await machine.step(task_id, started.payload)
    assert again.state == "queued"
    assert (await machine.row(task_id)).status == "running"


async def test_an_account_that_cannot_be_reached_fails_over_to_another(machine: Machine) -> None:
    spare = FakeExecutor()
    spare.id = "spare"
    machine.with_executors(spare)
    machine.executor.runs.append(outcome("transport_error", call(None)))
    spare.runs.append(outcome("succeeded", call(0, '{"output": "from the spare"}', "spare")))
    task_id = await machine.task(PROMPT, {"url": "https://img.example.org/a.png"})
    result = await machine.step(task_id)
    row = await machine.row(task_id)
    assert result.state == "done"
    assert (row.status, row.result_payload["texts"]) == ("succeeded", ["from the spare"])
    assert [log.executor_id for log in await machine.logs(task_id)] == ["fake", "spare"]


async def test_an_external_job_is_resolved_by_its_completion_notice(machine: Machine) -> None:
    machine.executor.runs.append(outcome("succeeded", call(0, '{"output": "job-9"}')))
    task_id = await machine.task(
        PATTERN, {"url": "https://img.example.org/a.png", "height": 512, "width": 512}
    )
    started = await machine.step(task_id)
    assert started.state == "queued"
    notice = {"externalId": "job-9", "status": "succeeded", "images": []}
    assert await complete_external_job(machine.state, "job-9", notice)
    row = await machine.row(task_id)
    assert row.status == "succeeded"
    assert row.result_payload["metadata"]["externalJobId"] == "job-9"
    # The job's next step finds the task ended and asks nothing more.
    after = await machine.step(task_id, started.payload)
    assert after.state == "done"
    assert [kind for kind, _ in machine.executor.asked] == ["run"]


def runner_for(machine: Machine, max_crashes: int = 3) -> Runner:
    jobs = JobRegistry()
    register(jobs)
    return Runner(
        RunnerDeps(
            db=machine.services.db,
            services=machine.services,
            notify_task=machine.services.task_events.notify,
            concurrency=1,
            poll_seconds=1.0,
            lease_seconds=30.0,
            sweep_seconds=60.0,
            max_crashes=max_crashes,
            jobs=jobs,
        )
    )


async def claim_one(machine: Machine, runner: Runner) -> Lease:
    leases = await machine.services.db.run_write(
        partial(claim, owner=runner.owner, token="tok", ttl_ms=30_000, limit=1)
    )
    assert len(leases) == 1
    return leases[0]


async def job_row(machine: Machine) -> Any:
    async with machine.services.db.read() as conn:
        return (await conn.execute(select(jobs).where(jobs.c.id == machine.job))).mappings().one()


class GatedExecutor(FakeExecutor):
    """A run that waits until the test lets it answer."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def run_workflow(
        self, workflow_id: str, parameters: dict[str, Any], *, deadline: float
    ) -> RunOutcome:
        self.entered.set()
        await self.gate.wait()
        return await super().run_workflow(workflow_id, parameters, deadline=deadline)


async def test_a_task_canceled_mid_step_stays_canceled_and_the_steps_result_is_dropped(
    machine: Machine,
) -> None:
    gated = GatedExecutor()
    gated.id = "fake"  # the task's executor
    gated.runs.append(outcome("succeeded", call(0, '{"output": "too late"}')))
    machine.services = dataclasses.replace(machine.services, executors=ExecutorRegistry([gated]))
    machine.state = dataclasses.replace(machine.state, services=machine.services)
    task_id = await machine.task(PROMPT, {"url": "https://img.example.org/a.png"})
    runner = runner_for(machine)
    lease = await claim_one(machine, runner)
    step = asyncio.ensure_future(runner.run_leased(lease))
    await asyncio.wait_for(gated.entered.wait(), 5)
    principal = Principal(token_id=machine.token_id, name="steps", scopes=frozenset({"invoke"}))
    canceled = await cancel_task(machine.state, principal, task_id)
    assert canceled["status"] == "canceled"
    gated.gate.set()
    assert await asyncio.wait_for(step, 5) is None  # the fenced finish found its lease gone
    row = await machine.row(task_id)
    assert (row.status, row.result_payload) == ("canceled", None)
    assert await machine.logs(task_id) == []  # the step's writes never ran
    assert (await job_row(machine)).state == "canceled"


class BrokenExecutor(FakeExecutor):
    async def run_workflow(
        self, workflow_id: str, parameters: dict[str, Any], *, deadline: float
    ) -> RunOutcome:
        raise RuntimeError("a bug in the step")


async def test_a_step_that_raises_is_counted_as_a_crash_and_the_last_one_fails_the_task(
    machine: Machine,
) -> None:
    broken = BrokenExecutor()
    broken.id = "fake"
    machine.services = dataclasses.replace(machine.services, executors=ExecutorRegistry([broken]))
    task_id = await machine.task(PROMPT, {"url": "https://img.example.org/a.png"})
    runner = runner_for(machine, max_crashes=2)
    first = await runner.run_leased(await claim_one(machine, runner))
    assert first is not None
    assert first.state == "queued"
    job = await job_row(machine)
    assert (job.state, job.crash_count) == ("queued", 1)
    assert "RuntimeError: a bug in the step" in job.last_error
    assert (await machine.row(task_id)).status == "running"  # retried, not failed yet
    await machine.services.db.run_write(
        lambda conn: conn.execute(
            update(jobs).where(jobs.c.id == machine.job).values(next_run_at=0)
        )
    )
    second = await runner.run_leased(await claim_one(machine, runner))
    assert second is not None
    assert second.state == "failed"
    job = await job_row(machine)
    assert (job.state, job.crash_count) == ("failed", 2)
    row = await machine.row(task_id)
    assert (row.status, row.error_payload["code"]) == ("failed", 500)
    assert "a bug in the step" in row.error_payload["message"]


async def test_the_claim_takes_the_clock_it_is_given(machine: Machine) -> None:
    task_id = await machine.task(PROMPT, {"url": "https://img.example.org/a.png"})
    later = machine.now_ms + 3_600_000
    await machine.services.db.run_write(
        lambda conn: conn.execute(
            update(jobs).where(jobs.c.id == machine.job).values(next_run_at=later)
        )
    )
    before = await machine.services.db.run_write(
        partial(claim, owner="n", token="t", ttl_ms=30_000, limit=1, now_ms=later - 1)
    )
    assert before == []  # not due yet at that moment
    leases = await machine.services.db.run_write(
        partial(claim, owner="n", token="t", ttl_ms=30_000, limit=1, now_ms=later)
    )
    assert [(lease.task_id, lease.now_ms) for lease in leases] == [(task_id, later)]
    job = await job_row(machine)
    assert (job.claimed_at, job.lease_expires_at) == (later, later + 30_000)
