"""The Coze client against real HTTP: the simulator, and a loopback server with odd answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from ability_gateway.server.providers.coze.client import CozeExecutor
from tests.support import free_port, simulator_process

PROMPT_WORKFLOW = "7597535455856295936"


async def run(executor: CozeExecutor, params: dict[str, Any], timeout: float = 10.0) -> Any:
    loop = asyncio.get_running_loop()
    try:
        return await executor.run_workflow(PROMPT_WORKFLOW, params, deadline=loop.time() + timeout)
    finally:
        await executor.close()


async def test_success_against_the_simulator(sim_url: str, sample_image: str) -> None:
    outcome = await run(CozeExecutor("t", sim_url, "pat_simulator"), {"url": sample_image})
    assert outcome.kind == "succeeded"
    call = outcome.last
    assert call.http_status == 200
    assert call.code == 0
    assert call.execute_id
    assert call.debug_url
    assert call.logid
    assert len(call.logid) == 34
    assert call.request_body == {
        "workflow_id": PROMPT_WORKFLOW,
        "parameters": {"url": sample_image},
    }


async def test_transient_failure_is_retried_then_reported(sample_image: str) -> None:
    with simulator_process("--fail-rate", "1") as url:
        executor = CozeExecutor("t", url, "pat_simulator", max_retries=2, retry_backoff=0.01)
        outcome = await run(executor, {"url": sample_image})
    assert outcome.kind == "workflow_error"
    assert [c.code for c in outcome.calls] == [720701013] * 3
    assert outcome.last.debug_url


async def test_permanent_failure_is_not_retried(sim_url: str) -> None:
    executor = CozeExecutor("t", sim_url, "pat_simulator", max_retries=2, retry_backoff=0.01)
    outcome = await run(executor, {})  # missing url: 4000
    assert outcome.kind == "workflow_error"
    assert [c.code for c in outcome.calls] == [4000]


Handler = Callable[[web.Request], Any]


@pytest.fixture
async def odd_coze() -> AsyncIterator[Callable[[Handler], Any]]:
    """Start a loopback server answering /v1/workflow/run with a given handler."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/v1/workflow/run", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def test_string_code_and_non_json_data(odd_coze: Callable[[Handler], Any]) -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response({"code": "0", "msg": "Success", "data": "just text"})

    url = await odd_coze(handler)
    outcome = await run(CozeExecutor("t", url, "x"), {})
    assert outcome.kind == "succeeded"
    assert outcome.last.code == 0
    assert outcome.last.execute_id is None
    assert outcome.last.response == {"code": "0", "msg": "Success", "data": "just text"}


async def test_string_error_code(odd_coze: Callable[[Handler], Any]) -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response({"code": "4200", "msg": "not found"})

    url = await odd_coze(handler)
    outcome = await run(CozeExecutor("t", url, "x"), {})
    assert outcome.kind == "workflow_error"
    assert outcome.last.code == 4200
    assert outcome.last.message == "not found"


async def test_html_502_is_a_transport_error_and_retried(
    odd_coze: Callable[[Handler], Any],
) -> None:
    hits = 0

    async def handler(_: web.Request) -> web.Response:
        nonlocal hits
        hits += 1
        return web.Response(status=502, text="<html>bad gateway</html>", content_type="text/html")

    url = await odd_coze(handler)
    outcome = await run(CozeExecutor("t", url, "x", max_retries=1, retry_backoff=0.01), {})
    assert outcome.kind == "transport_error"
    assert hits == 2
    assert outcome.last.http_status == 502
    assert "without a JSON body" in (outcome.last.error or "")


async def test_missing_code_with_data_counts_as_success(
    odd_coze: Callable[[Handler], Any],
) -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response({"data": '{"output": "ok"}'})

    url = await odd_coze(handler)
    outcome = await run(CozeExecutor("t", url, "x"), {})
    assert outcome.kind == "succeeded"


async def test_http_401_with_coze_code(odd_coze: Callable[[Handler], Any]) -> None:
    async def handler(_: web.Request) -> web.Response:
        return web.json_response({"code": 700012006, "msg": "access token invalid"}, status=401)

    url = await odd_coze(handler)
    outcome = await run(CozeExecutor("t", url, "x"), {})
    assert outcome.kind == "workflow_error"
    assert outcome.last.code == 700012006
    assert outcome.last.http_status == 401


async def test_deadline_ends_a_slow_call(odd_coze: Callable[[Handler], Any]) -> None:
    async def handler(_: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({"code": 0})

    url = await odd_coze(handler)
    outcome = await run(CozeExecutor("t", url, "x"), {}, timeout=0.2)
    assert outcome.kind == "timeout"
    assert "no answer within" in (outcome.last.error or "")


async def test_redirects_are_not_followed(odd_coze: Callable[[Handler], Any]) -> None:
    async def handler(_: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/")

    url = await odd_coze(handler)
    outcome = await run(CozeExecutor("t", url, "x"), {})
    assert outcome.kind == "transport_error"
    assert outcome.last.http_status == 302


async def test_throttling_slows_down_instead_of_failing(odd_coze: Callable[[Handler], Any]) -> None:
    answers = [{"code": 4009, "msg": "Request rate exceeded"}] * 3 + [
        {"code": 0, "data": '{"output": "ok"}'}
    ]

    async def handler(_: web.Request) -> web.Response:
        return web.json_response(answers.pop(0))

    url = await odd_coze(handler)
    outcome = await run(CozeExecutor("t", url, "x", max_retries=0, retry_backoff=0.01), {})
    assert outcome.kind == "succeeded"
    assert [c.code for c in outcome.calls] == [4009, 4009, 4009, 0]
