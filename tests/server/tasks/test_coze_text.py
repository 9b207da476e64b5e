"""Text that comes from Coze is stored safely, never refused: PostgreSQL text and JSON
columns cannot hold NUL, and Coze's answers are untrusted (both databases)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import create_token
from ability_gateway.server.state import GatewayState
from tests.conftest import make_settings
from tests.support import free_port

PROMPT = "/api/abilities/ability_coze_prompt_extract/invoke"
NUL_TEXT = "before\x00after \x01\x7f"


@pytest.fixture
async def odd_coze() -> AsyncIterator[Callable[[dict[str, Any]], Any]]:
    """A loopback Coze answering every workflow run with a given JSON body."""
    runners: list[web.AppRunner] = []

    async def start(answer: dict[str, Any]) -> str:
        async def handler(_: web.Request) -> web.Response:
            return web.json_response(answer)

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


async def _invoke_and_read(
    tmp_path: Path, coze_url: str, image: str, path: str = PROMPT, **inputs: Any
) -> tuple[httpx.Response, dict[str, Any], dict[str, Any]]:
    """The invoke's answer, then the task and the task list as the caller reads them."""
    settings = make_settings(tmp_path, coze_url, coze_max_retries=0)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: GatewayState = app.state.gateway
        created = await create_token(state.db, "t")
        headers = {"Authorization": f"Bearer {created.token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            payload = {"inputs": inputs or {"url": image}}
            response = await c.post(path, json=payload, headers=headers)
            task_id = (
                response.json()["metadata"]["taskId"]
                if response.status_code == 200
                else (response.json()["taskId"])
            )
            task = await c.get(f"/api/ability_tasks/{task_id}", headers=headers)
            listed = await c.get("/api/ability_tasks", headers=headers)
    assert task.status_code == 200, task.text
    assert listed.status_code == 200, listed.text
    return response, task.json(), listed.json()


async def test_nul_in_cozes_output_is_returned_not_refused(
    tmp_path: Path, odd_coze: Callable[[dict[str, Any]], Any], sample_image: str
) -> None:
    coze = await odd_coze(
        {
            "code": 0,
            "msg": NUL_TEXT,
            "data": '{"output": "a\\u0000b"}',
            "execute_id": "e\x00x",
            "debug_url": "https://www.coze.cn/work_flow?execute_id=\x00",
        }
    )
    response, task, listed = await _invoke_and_read(tmp_path, coze, sample_image)
    assert response.status_code == 200, response.text
    assert response.json()["texts"] == ["a\x00b"]
    assert task["status"] == "succeeded"
    assert task["resultPayload"]["texts"] == ["a\x00b"]
    assert [t["id"] for t in listed["items"]] == [task["id"]]


async def test_nul_in_cozes_error_message_fails_the_task_visibly(
    tmp_path: Path, odd_coze: Callable[[dict[str, Any]], Any], sample_image: str
) -> None:
    coze = await odd_coze(
        {"code": 720701013, "msg": NUL_TEXT, "detail": {"logid": "l\x00g"}, "execute_id": "\x00"}
    )
    response, task, _ = await _invoke_and_read(tmp_path, coze, sample_image)
    assert response.status_code == 502, response.text
    assert response.json()["code"] == 720701013
    assert "before" in response.json()["message"]
    assert task["status"] == "failed"
    assert "before" in task["errorPayload"]["message"]


async def test_nul_in_an_output_url_is_mirrored_and_kept(
    tmp_path: Path, odd_coze: Callable[[dict[str, Any]], Any], sim_url: str
) -> None:
    image = f"{sim_url}/files/samples/square.png"
    coze = await odd_coze(
        {"code": 0, "msg": "", "data": orjson.dumps({"output": image + "?\x00"}).decode()}
    )
    expand = {"expand_top": 0, "expand_bottom": 0, "expand_left": 1, "expand_right": 1}
    response, task, _ = await _invoke_and_read(
        tmp_path, coze, image, "/api/abilities/ability_coze_outpaint/invoke", Url=image, **expand
    )
    assert response.status_code == 200, response.text
    assert task["status"] == "succeeded"
    [shown] = task["resultPayload"]["images"]
    assert shown["sourceUrl"] == image + "?\x00"
    assert shown["ossUrl"], task["resultPayload"]["metadata"].get("warnings")
