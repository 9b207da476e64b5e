from __future__ import annotations

import asyncio
import re
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import create_token
from ability_gateway.server.config import Settings
from ability_gateway.server.models import tasks
from ability_gateway.server.state import GatewayState
from tests.conftest import make_settings
from tests.support import free_port, simulator_process

PROMPT = "/api/abilities/ability_coze_prompt_extract/invoke"
OUTPAINT = "/api/abilities/ability_coze_outpaint/invoke"
UPSCALE = "/api/abilities/ability_coze_upscale_8k/invoke"
TAG_SMALL = "/api/abilities/ability_coze_tagging_small/invoke"
TAG_LARGE = "/api/abilities/ability_coze_tagging_large/invoke"
DEEP: dict[str, Any] = {"a": 1}
for _ in range(40):
    DEEP = {"a": DEEP}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")  # spec §3.3: seconds, UTC


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_prompt_extract_result_has_the_spec_shape(
    client: httpx.AsyncClient, auth: dict[str, str], sample_image: str
) -> None:
    response = await client.post(
        PROMPT, json={"inputs": {"url": sample_image, "shuru": "水彩"}}, headers=auth
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == [
        "abilityId",
        "provider",
        "status",
        "requestId",
        "logId",
        "durationMs",
        "texts",
        "images",
        "videos",
        "assets",
        "metadata",
        "raw",
    ]
    assert body["abilityId"] == "ability_coze_prompt_extract"
    assert body["provider"] == "coze"
    assert body["status"] == "succeeded"
    assert body["requestId"] == response.headers["x-request-id"]
    assert isinstance(body["logId"], int)
    assert isinstance(body["durationMs"], int)
    assert len(body["texts"]) == 1
    assert re.search(r"[\u4e00-\u9fff]", body["texts"][0])
    assert body["images"] == body["videos"] == body["assets"] == []
    meta = body["metadata"]
    assert meta["model"] == "coze"
    assert meta["state"] == "completed"
    assert meta["taskId"].startswith("task_")
    assert meta["executeId"].isdigit()
    assert meta["debugUrl"].startswith("https://www.coze.cn/work_flow?execute_id=")
    raw = body["raw"]["response"]
    assert raw["code"] == 0
    assert raw["execute_id"] == meta["executeId"]
    assert raw["debug_url"] == meta["debugUrl"]
    assert isinstance(raw["data"], str)


async def test_same_inputs_give_the_same_prompt(
    client: httpx.AsyncClient, auth: dict[str, str], sample_image: str
) -> None:
    body = {"inputs": {"url": sample_image}}
    first = (await client.post(PROMPT, json=body, headers=auth)).json()
    second = (await client.post(PROMPT, json=body, headers=auth)).json()
    assert first["texts"] == second["texts"]
    assert first["metadata"]["taskId"] != second["metadata"]["taskId"]
    assert second["logId"] > first["logId"]


async def test_request_id_is_taken_from_the_caller(
    client: httpx.AsyncClient, auth: dict[str, str], sample_image: str
) -> None:
    response = await client.post(
        PROMPT,
        json={"inputs": {"url": sample_image}},
        headers={**auth, "X-Request-ID": "abc123"},
    )
    assert response.status_code == 200
    assert response.json()["requestId"] == "abc123"
    assert response.headers["x-request-id"] == "abc123"


async def test_unusable_request_id_is_replaced(
    client: httpx.AsyncClient, auth: dict[str, str], sample_image: str
) -> None:
    response = await client.post(
        PROMPT,
        json={"inputs": {"url": sample_image}},
        headers={**auth, "X-Request-ID": "bad id with spaces"},
    )
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.json()["requestId"])


@pytest.mark.parametrize("path", [TAG_SMALL, TAG_LARGE])
async def test_tagging_returns_json_tags(
    client: httpx.AsyncClient, auth: dict[str, str], sample_image: str, path: str
) -> None:
    response = await client.post(path, json={"inputs": {"url": sample_image}}, headers=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["texts"]) == 1
    assert body["assets"][0]["type"] == "json"
    assert body["assets"][0]["name"] == "tags"
    tags = body["assets"][0]["data"]
    assert isinstance(tags, dict)
    assert tags
    assert all(isinstance(v, list) for v in tags.values())


async def test_large_tagging_gives_more_tags(
    client: httpx.AsyncClient, auth: dict[str, str], sample_image: str
) -> None:
    small = await client.post(TAG_SMALL, json={"inputs": {"url": sample_image}}, headers=auth)
    large = await client.post(TAG_LARGE, json={"inputs": {"url": sample_image}}, headers=auth)

    def count(r: httpx.Response) -> int:
        return sum(len(v) for v in r.json()["assets"][0]["data"].values())

    assert count(large) > count(small)


async def test_outpaint_returns_the_expanded_png(
    client: httpx.AsyncClient, auth: dict[str, str], sample_image: str
) -> None:
    response = await client.post(
        OUTPAINT,
        json={
            "imageUrl": sample_image,
            "inputs": {
                "expand_top": 10,
                "expand_bottom": 20,
                "expand_left": 30,
                "expand_right": 40,
                "moxing": "2",
            },
        },
        headers=auth,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["texts"] == []
    assert len(body["images"]) == 1
    image = body["images"][0]
    assert image["type"] == "image"
    async with httpx.AsyncClient() as plain:
        png = await plain.get(image["sourceUrl"])
    assert png.status_code == 200
    assert png.headers["content-type"] == "image/png"
    assert png_size(png.content) == (1024 + 30 + 40, 768 + 10 + 20)
    # Our copy, served by the gateway itself (local storage).
    assert image["ossUrl"].startswith("http://127.0.0.1:8080/media/")
    ours = await client.get(image["ossUrl"].removeprefix("http://127.0.0.1:8080"))
    assert ours.status_code == 200
    assert ours.content == png.content


async def test_upscale_longest_side_is_bianchang(
    client: httpx.AsyncClient, auth: dict[str, str], sample_image: str
) -> None:
    response = await client.post(
        UPSCALE, json={"inputs": {"url": sample_image, "bianchang": 2048}}, headers=auth
    )
    assert response.status_code == 200, response.text
    url = response.json()["images"][0]["sourceUrl"]
    async with httpx.AsyncClient() as plain:
        png = await plain.get(url)
    assert png_size(png.content) == (2048, 1536)


async def test_caller_metadata_is_echoed_under_client(
    client: httpx.AsyncClient, auth: dict[str, str], sample_image: str
) -> None:
    mine = {"orderId": 42, "taskId": "mine", "state": "x"}
    response = await client.post(
        PROMPT, json={"inputs": {"url": sample_image}, "metadata": mine}, headers=auth
    )
    meta = response.json()["metadata"]
    assert meta["client"] == mine
    assert meta["taskId"].startswith("task_")
    assert meta["state"] == "completed"


async def test_json_is_accepted_without_a_json_content_type(
    client: httpx.AsyncClient, auth: dict[str, str], sample_image: str
) -> None:
    response = await client.post(
        PROMPT,
        content=f'{{"inputs": {{"url": "{sample_image}"}}}}',
        headers={**auth, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text


def assert_error(
    response: httpx.Response, http_status: int, code: int | None = None, **fields: Any
) -> dict[str, Any]:
    assert response.status_code == http_status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == (http_status if code is None else code)
    assert isinstance(body["message"], str)
    assert body["message"]
    assert body["requestId"] == response.headers["x-request-id"]
    for key, value in fields.items():
        assert body[key] == value
    return body


@pytest.mark.parametrize(
    ("payload", "errors"),
    [
        ({"inputs": {}}, [{"field": "inputs.url", "problem": "is required"}]),
        ({"inputs": {"url": 1}}, [{"field": "inputs.url", "problem": "must be a string"}]),
        (
            {"inputs": {"url": "https://e.com/a.png", "x": 1}},
            [{"field": "inputs.x", "problem": "is not an input of this ability"}],
        ),
        ({}, [{"field": "inputs", "problem": "is required"}]),
        ({"inputs": []}, [{"field": "inputs", "problem": "must be an object"}]),
        (
            {"inputs": {"url": "https://e.com/a.png"}, "colour": 1},
            [{"field": "colour", "problem": "is not a known field"}],
        ),
        (
            {"inputs": {"url": "https://e.com/a.png"}, "callbackUrl": "ftp://x"},
            [{"field": "callbackUrl", "problem": "must be an http(s) URL"}],
        ),
        (
            {
                "inputs": {"url": "https://e.com/a.png"},
                "callbackUrl": "https://e.com/cb",
                "callbackHeaders": {"Content-Type": "text/plain"},
            },
            [{"field": "callbackHeaders.Content-Type", "problem": "is reserved by the gateway"}],
        ),
        (
            {
                "inputs": {"url": "https://e.com/a.png"},
                "callbackUrl": "https://e.com/cb",
                "callbackHeaders": {"webhook-id": "x"},
            },
            [{"field": "callbackHeaders.webhook-id", "problem": "is reserved by the gateway"}],
        ),
        (
            {"inputs": {"url": "https://e.com/a.png"}, "callbackHeaders": {"X-A": "b"}},
            [{"field": "callbackHeaders", "problem": "needs a callbackUrl"}],
        ),
        (
            {"inputs": {"url": "https://e.com/a.png"}, "metadata": {"big": "x" * 20000}},
            [{"field": "metadata", "problem": "must be at most 16384 bytes as JSON"}],
        ),
        (
            {"inputs": {"url": "https://e.com/a.png"}, "metadata": DEEP},
            [{"field": "metadata", "problem": "must nest at most 32 levels"}],
        ),
        (
            {
                "inputs": {"url": "https://e.com/a.png"},
                "callbackUrl": "https://e.com/cb",
                "callbackHeaders": {"X-A": "中文"},
            },
            [{"field": "callbackHeaders.X-A", "problem": "is not a valid header value"}],
        ),
        (
            {"inputs": {"url": "https://e.com/a.png"}, "executorId": "nope"},
            [{"field": "executorId", "problem": "no executor 'nope'"}],
        ),
    ],
)
async def test_bad_invoke_body_is_400_with_field_errors(
    client: httpx.AsyncClient, auth: dict[str, str], payload: Any, errors: list[Any]
) -> None:
    body = assert_error(await client.post(PROMPT, json=payload, headers=auth), 400)
    assert body["errors"] == errors


@pytest.mark.parametrize(
    ("inputs", "field", "problem"),
    [
        (
            {"url": "https://e.com/a.png", "bianchang": 8193},
            "inputs.bianchang",
            "must be at most 8192",
        ),
        (
            {"url": "https://e.com/a.png", "bianchang": 0},
            "inputs.bianchang",
            "must be greater than 0",
        ),
        ({"url": "https://e.com/a.png", "bianchang": "8k"}, "inputs.bianchang", "must be a number"),
    ],
)
async def test_upscale_bad_bianchang_is_400(
    client: httpx.AsyncClient, auth: dict[str, str], inputs: Any, field: str, problem: str
) -> None:
    body = assert_error(await client.post(UPSCALE, json={"inputs": inputs}, headers=auth), 400)
    assert body["errors"] == [{"field": field, "problem": problem}]


async def test_outpaint_bad_moxing_is_400(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    inputs = {
        "Url": "https://e.com/a.png",
        "expand_top": 0,
        "expand_bottom": 0,
        "expand_left": 0,
        "expand_right": 0,
        "moxing": "9",
    }
    body = assert_error(await client.post(OUTPAINT, json={"inputs": inputs}, headers=auth), 400)
    assert body["errors"] == [{"field": "inputs.moxing", "problem": "must be one of '1', '2', '3'"}]


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"{bad", "is not valid JSON"), (b"", "is empty"), (b"[1, 2]", "must be a JSON object")],
)
async def test_unparseable_body_is_400(
    client: httpx.AsyncClient, auth: dict[str, str], content: bytes, problem: str
) -> None:
    response = await client.post(
        PROMPT, content=content, headers={**auth, "Content-Type": "application/json"}
    )
    body = assert_error(response, 400)
    assert body["errors"][0]["field"] == "body"
    assert body["errors"][0]["problem"].startswith(problem)


async def test_oversized_body_is_413(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    huge = b'{"inputs": {"url": "' + b"a" * (21 * 1024 * 1024) + b'"}}'
    assert_error(await client.post(PROMPT, content=huge, headers=auth), 413)


async def test_invoke_of_unknown_ability_is_404(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.post("/api/abilities/nope/invoke", json={"inputs": {}}, headers=auth)
    assert_error(response, 404, message="Ability 'nope' does not exist")


async def test_invoke_needs_a_token(client: httpx.AsyncClient) -> None:
    assert_error(await client.post(PROMPT, json={"inputs": {}}), 401)


async def test_task_query_returns_the_spec_shape(
    client: httpx.AsyncClient, auth: dict[str, str], sample_image: str
) -> None:
    invoked = (
        await client.post(
            PROMPT, json={"inputs": {"url": sample_image}}, headers={**auth, "X-Request-ID": "r1"}
        )
    ).json()
    task_id = invoked["metadata"]["taskId"]
    response = await client.get(f"/api/ability_tasks/{task_id}", headers=auth)
    assert response.status_code == 200
    task = response.json()
    assert list(task) == [
        "id",
        "abilityId",
        "status",
        "requestId",
        "logId",
        "createTime",
        "updateTime",
        "resultPayload",
        "errorPayload",
        "callback",
    ]
    assert task["id"] == task_id
    assert task["abilityId"] == "ability_coze_prompt_extract"
    assert task["status"] == "succeeded"
    assert task["requestId"] == "r1"
    assert task["logId"] == invoked["logId"]
    assert ISO.match(task["createTime"])
    assert ISO.match(task["updateTime"])
    assert task["updateTime"] >= task["createTime"]
    assert task["resultPayload"]["texts"] == invoked["texts"]
    assert task["resultPayload"]["metadata"] == invoked["metadata"]
    assert task["errorPayload"] is None
    assert task["callback"] is None  # no callbackUrl


async def test_another_tokens_task_is_404(
    client: httpx.AsyncClient, auth: dict[str, str], gateway: GatewayState, sample_image: str
) -> None:
    invoked = (
        await client.post(PROMPT, json={"inputs": {"url": sample_image}}, headers=auth)
    ).json()
    other = await create_token(gateway.db, "other")
    response = await client.get(
        f"/api/ability_tasks/{invoked['metadata']['taskId']}",
        headers={"Authorization": f"Bearer {other.token}"},
    )
    assert_error(response, 404)


async def test_unknown_task_is_404(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    assert_error(await client.get("/api/ability_tasks/task_nope", headers=auth), 404)


# --- upstream failures: each needs its own simulator or executor -------------------------


async def _invoke_with(settings: Settings, path: str, payload: Any) -> tuple[httpx.Response, Any]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        state: GatewayState = app.state.gateway
        created = await create_token(state.db, "t")
        headers = {"Authorization": f"Bearer {created.token}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            response = await c.post(path, json=payload, headers=headers)
            task = None
            if "taskId" in response.json():
                task = (
                    await c.get(f"/api/ability_tasks/{response.json()['taskId']}", headers=headers)
                ).json()
    return response, task


async def test_workflow_failure_is_502_with_cozes_code(tmp_path: Path, sample_image: str) -> None:
    with simulator_process("--fail-rate", "1") as failing:
        settings = make_settings(tmp_path, failing, coze_max_retries=1)
        response, task = await _invoke_with(settings, PROMPT, {"inputs": {"url": sample_image}})
    body = assert_error(response, 502, code=720701013, status="failed")
    assert set(body) == {"code", "message", "requestId", "taskId", "logId", "debugUrl", "status"}
    assert body["debugUrl"].startswith("https://www.coze.cn/work_flow?execute_id=")
    assert isinstance(body["logId"], int)
    assert task["status"] == "failed"
    assert task["resultPayload"] is None
    assert task["errorPayload"]["code"] == 720701013
    assert task["errorPayload"]["debugUrl"] == body["debugUrl"]
    assert task["errorPayload"]["logId"] == body["logId"] == task["logId"]


async def test_unreachable_coze_is_502(tmp_path: Path, sample_image: str) -> None:
    settings = make_settings(tmp_path, f"http://127.0.0.1:{free_port()}", coze_max_retries=0)
    response, task = await _invoke_with(settings, PROMPT, {"inputs": {"url": sample_image}})
    body = assert_error(response, 502, status="failed")
    assert body["message"] == "Coze could not be reached"  # no internal address in answers
    assert task["status"] == "failed"
    assert task["errorPayload"]["code"] == 502


async def test_bad_coze_token_is_502_with_4100(
    tmp_path: Path, sample_image: str, sim_url: str
) -> None:
    settings = make_settings(tmp_path, sim_url, coze_api_token="pat_wrong")
    response, task = await _invoke_with(settings, PROMPT, {"inputs": {"url": sample_image}})
    assert_error(response, 502, code=4100, status="failed")
    assert task["errorPayload"]["code"] == 4100


async def test_deadline_is_504_and_task_timeout(tmp_path: Path, sample_image: str) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        """
abilities:
  - id: slow_prompt
    displayName: 慢
    capabilityKey: slow
    workflowId: "7597535455856295936"
    imageField: url
    output: {kind: text}
    timeoutSeconds: 0.3
    inputs: [{name: url, type: string, required: true}]
""",
        encoding="utf-8",
    )
    with simulator_process("--latency-ms", "3000") as slow:
        settings = make_settings(tmp_path, slow, catalog_file=catalog)
        response, task = await _invoke_with(
            settings, "/api/abilities/slow_prompt/invoke", {"inputs": {"url": sample_image}}
        )
    assert_error(response, 504, status="timeout")
    assert task["status"] == "timeout"
    assert task["errorPayload"]["code"] == 504


async def test_no_executor_configured_is_503(tmp_path: Path, sample_image: str) -> None:
    settings = make_settings(tmp_path, "http://127.0.0.1:1", coze_api_token=None)
    response, _ = await _invoke_with(settings, PROMPT, {"inputs": {"url": sample_image}})
    assert_error(response, 503)


async def test_a_ninth_ability_needs_only_a_catalog_entry(
    tmp_path: Path, sim_url: str, sample_image: str
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        """
abilities:
  - id: ability_custom_tags
    displayName: 自定义打标
    description: 新增能力
    capabilityKey: custom_tags
    workflowId: "7597767702970630144"
    imageField: url
    output: {kind: json, name: labels}
    inputs: [{name: url, type: string, required: true, description: 图片地址}]
""",
        encoding="utf-8",
    )
    settings = make_settings(tmp_path, sim_url, catalog_file=catalog)
    response, _ = await _invoke_with(
        settings,
        "/api/abilities/ability_custom_tags/invoke",
        {"imageUrl": sample_image, "inputs": {}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["assets"][0]["name"] == "labels"


async def test_a_caller_hanging_up_does_not_lose_the_task(
    tmp_path: Path, sample_image: str
) -> None:
    with simulator_process("--latency-ms", "700") as slow:
        settings = make_settings(tmp_path, slow)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            state: GatewayState = app.state.gateway
            created = await create_token(state.db, "t")
            headers = {"Authorization": f"Bearer {created.token}", "X-Request-ID": "hangup-1"}
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
                call = asyncio.ensure_future(
                    c.post(PROMPT, json={"inputs": {"url": sample_image}}, headers=headers)
                )
                await asyncio.sleep(0.3)
                call.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await call
            await state.drain(timeout=10)
            async with state.db.read() as conn:
                rows = (
                    (await conn.execute(select(tasks).where(tasks.c.request_id == "hangup-1")))
                    .mappings()
                    .all()
                )
    assert len(rows) == 1
    assert rows[0]["status"] == "succeeded"
    assert rows[0]["log_id"] is not None
    assert rows[0]["result_payload"]["texts"]


async def test_more_than_fifty_problems_are_summarised(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    inputs = {f"k{i}": i for i in range(500)}
    body = assert_error(await client.post(PROMPT, json={"inputs": inputs}, headers=auth), 400)
    assert len(body["errors"]) == 51
    assert body["errors"][-1] == {"field": "…", "problem": "and 451 more problems"}


async def test_a_long_unknown_ability_id_is_not_echoed_whole(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.get("/api/abilities/" + "x" * 5000, headers=auth)
    body = assert_error(response, 404)
    assert len(body["message"]) < 200


@pytest.mark.parametrize(
    "answer",
    [
        {"code": 0, "msg": "", "data": "[" * 300 + "]" * 300},
        {"code": 0, "msg": ""},
        {"code": "--1", "msg": "odd"},
        {"code": 99999999999999999999, "msg": "huge"},
    ],
)
async def test_strange_coze_answers_fail_the_task_visibly(
    tmp_path: Path, sample_image: str, answer: dict[str, Any]
) -> None:
    from aiohttp import web

    async def handler(_: web.Request) -> web.Response:
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/workflow/run", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        settings = make_settings(tmp_path, f"http://127.0.0.1:{port}", coze_max_retries=0)
        response, task = await _invoke_with(
            settings,
            "/api/abilities/ability_coze_tagging_small/invoke",
            {"inputs": {"url": sample_image}},
        )
    finally:
        await runner.cleanup()
    body = assert_error(response, 502, code=502, status="failed")
    assert task["status"] == "failed"
    assert task["errorPayload"]["logId"] == body["logId"]
