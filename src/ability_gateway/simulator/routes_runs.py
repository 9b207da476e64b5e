"""The workflow run routes: run (sync or async), run history, and the job introspection route.

This module owns ``POST /v1/workflow/run``, ``GET /v1/workflows/{workflow_id}/run_histories/
{execute_id}`` and ``GET /v1/sim/jobs/{job_id}``: authenticating the caller, the latency and
fault-injection knobs applied to each run, running the workflow with a view of the simulator
(:class:`_RunContext`), finishing async runs in the background, and the run-history throttle.

An async run stays ``Running`` for ``max(latency_ms / 1000, 0.2)`` seconds after its submit is
answered, then executes: the 0.2 s floor keeps the ``Running`` state observable even with no latency
configured, which is what a poller must be tested against.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiohttp import web

from ability_gateway.simulator.definition import BadParameter, WorkflowFailure
from ability_gateway.simulator.envelope import error_reply, reply
from ability_gateway.simulator.files import generated_path
from ability_gateway.simulator.jobs import JobRegistry
from ability_gateway.simulator.protocol import (
    CODE_AUTH_INVALID,
    CODE_BAD_PARAMETER,
    CODE_EXECUTE_FAILED,
    CODE_RATE_LIMITED,
    CODE_RECORD_NOT_FOUND,
    CODE_WORKFLOW_NOT_FOUND,
    MSG_AUTH_INVALID,
    MSG_JOB_NOT_FOUND,
    MSG_RATE_LIMITED,
    MSG_RECORD_NOT_FOUND,
    MSG_SERVER_ISSUES,
    MSG_WORKFLOW_NOT_FOUND,
    dumps,
)
from ability_gateway.simulator.run_request import RunRequest, WorkflowNotFound, parse_run_request
from ability_gateway.simulator.runs import RUN_MODE_ASYNC, RUN_MODE_SYNC, RunRecord
from ability_gateway.simulator.sources import SourceImageError, SourceImages
from ability_gateway.simulator.state import SIMULATOR, SimulatorState

__all__ = ["MIN_ASYNC_SECONDS", "get_job", "get_run_history", "run_workflow"]

logger = logging.getLogger(__name__)

MIN_ASYNC_SECONDS = 0.2
"""Shortest time an async run stays ``Running`` (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class _RunContext:
    """A run's view of the simulator (implements ``definition.RunContext``)."""

    jobs: JobRegistry
    sources: SourceImages
    base_url: str
    own_origins: frozenset[str]

    async def image_size(self, url: str) -> tuple[int, int]:
        try:
            return await self.sources.size(url, self.own_origins)
        except SourceImageError as exc:
            raise WorkflowFailure(f"failed to download image from url {url}: {exc}") from exc

    def file_url(self, width: int, height: int, name: str) -> str:
        return self.base_url + generated_path(width, height, name)


async def run_workflow(request: web.Request) -> web.Response:
    """``POST /v1/workflow/run``: the sync run, or the submit of an async one."""
    sim = request.app[SIMULATOR]
    owner = sim.owner_of(request)
    if owner is None:
        return error_reply(request, CODE_AUTH_INVALID, MSG_AUTH_INVALID)
    try:
        run = parse_run_request(await request.read())
    except BadParameter as exc:
        return error_reply(request, CODE_BAD_PARAMETER, str(exc))
    except WorkflowNotFound:
        return error_reply(request, CODE_WORKFLOW_NOT_FOUND, MSG_WORKFLOW_NOT_FOUND)

    if sim.latency_seconds > 0:
        await asyncio.sleep(sim.latency_seconds)
    fails = sim.draw_failure()
    record = sim.runs.start(
        execute_id=sim.execute_ids(),
        workflow_id=run.workflow.workflow_id,
        run_mode=RUN_MODE_ASYNC if run.is_async else RUN_MODE_SYNC,
        logid=request["logid"],
        connector_uid=run.user_id or owner,
        bot_id=run.bot_id,
    )
    origin = str(request.url.origin())
    context = _RunContext(
        jobs=sim.jobs,
        sources=sim.sources,
        base_url=sim.base_url(request),
        own_origins=frozenset(o for o in (origin, sim.public_origin) if o),
    )

    if run.is_async:
        sim.spawn(_finish_async_run(sim, run, context, record, fails))
        return reply(
            request,
            {
                "code": 0,
                "msg": "Success",
                "execute_id": record.execute_id,
                "debug_url": record.debug_url,
            },
        )

    if fails:
        sim.runs.fail(record, CODE_EXECUTE_FAILED, MSG_SERVER_ISSUES)
        return _failure(request, record, MSG_SERVER_ISSUES)
    try:
        outcome = await run.workflow.run(run.inputs, context)
    except WorkflowFailure as exc:
        sim.runs.fail(record, CODE_EXECUTE_FAILED, exc.message)
        return _failure(request, record, exc.message)
    sim.runs.succeed(record, outcome.end_vars, outcome.usage)
    return reply(
        request,
        {
            "code": 0,
            "msg": "",
            "data": dumps(outcome.end_vars),
            "execute_id": record.execute_id,
            "debug_url": record.debug_url,
            "usage": outcome.usage.as_dict(),
        },
    )


def _failure(request: web.Request, record: RunRecord, msg: str) -> web.Response:
    # The cloud's failed-run body: code, msg and the trace link, no data.
    return reply(request, {"code": CODE_EXECUTE_FAILED, "msg": msg, "debug_url": record.debug_url})


async def _finish_async_run(
    sim: SimulatorState, run: RunRequest, context: _RunContext, record: RunRecord, fails: bool
) -> None:
    await asyncio.sleep(max(sim.latency_seconds, MIN_ASYNC_SECONDS))
    if fails:
        sim.runs.fail(record, CODE_EXECUTE_FAILED, MSG_SERVER_ISSUES)
        return
    try:
        outcome = await run.workflow.run(run.inputs, context)
    except WorkflowFailure as exc:
        sim.runs.fail(record, CODE_EXECUTE_FAILED, exc.message)
    except Exception:
        # Nothing may leave a run Running forever: an unexpected error still ends it, visibly.
        logger.exception("async run %s crashed", record.execute_id)
        sim.runs.fail(record, CODE_EXECUTE_FAILED, "Workflow execution failure: internal error")
    else:
        sim.runs.succeed(record, outcome.end_vars, outcome.usage)


async def get_run_history(request: web.Request) -> web.Response:
    """``GET /v1/workflows/{workflow_id}/run_histories/{execute_id}``."""
    sim = request.app[SIMULATOR]
    if sim.throttled():
        return error_reply(request, CODE_RATE_LIMITED, MSG_RATE_LIMITED)
    if sim.owner_of(request) is None:
        return error_reply(request, CODE_AUTH_INVALID, MSG_AUTH_INVALID)
    record = sim.runs.get(request.match_info["execute_id"])
    if record is None or record.workflow_id != request.match_info["workflow_id"]:
        return error_reply(request, CODE_RECORD_NOT_FOUND, MSG_RECORD_NOT_FOUND)
    return reply(request, {"code": 0, "msg": "", "data": [record.history_item()]})


async def get_job(request: web.Request) -> web.Response:
    """``GET /v1/sim/jobs/{job_id}``: a job's report (simulator only, not part of Coze's API)."""
    sim = request.app[SIMULATOR]
    if sim.owner_of(request) is None:
        return error_reply(request, CODE_AUTH_INVALID, MSG_AUTH_INVALID)
    job = sim.jobs.get(request.match_info["job_id"])
    if job is None:
        return error_reply(request, CODE_RECORD_NOT_FOUND, MSG_JOB_NOT_FOUND)
    return reply(
        request, {"code": 0, "msg": "", "data": sim.jobs.report(job, sim.base_url(request))}
    )
