"""AsyncClient against the real gateway: in-process (httpx.ASGITransport) and over HTTP."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest

from ability_gateway import (
    Ability,
    AsyncClient,
    ConflictError,
    GatewayTimeoutError,
    InvokeResult,
    Media,
    NotFoundError,
    Task,
    verify_callback,
)
from ability_gateway._callbacks import CallbackDeduplicator
from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import CreatedToken, create_token
from tests.conftest import make_settings
from tests.sdk.conftest import EXPAND, GEN, OUTPAINT, PROMPT, gen_inputs, write_png
from tests.server.conftest import LiveFactory
from tests.support import Receiver


class Recording(httpx.AsyncBaseTransport):
    """The real transport, with every request recorded and chosen answers dropped."""

    def __init__(self, inner: httpx.AsyncBaseTransport, drop_first_invoke: bool = False) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []
        self.drop_first_invoke = drop_first_invoke
        self.dropped: dict[str, Any] | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        response = await self.inner.handle_async_request(request)
        if self.drop_first_invoke and request.url.path.endswith("/invoke") and not self.dropped:
            # The gateway did the work; the answer is lost on the way back.
            await response.aread()
            self.dropped = httpx.Response(response.status_code, content=response.content).json()
            raise httpx.RemoteProtocolError("Server disconnected", request=request)
        return response


def recording_client(app: Any, token: CreatedToken, **kwargs: Any) -> tuple[AsyncClient, Recording]:
    transport = Recording(httpx.ASGITransport(app=app), **kwargs)
    return AsyncClient("http://gateway", token.token, transport=transport), transport


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_list_abilities_is_typed(aclient: AsyncClient) -> None:
    abilities = await aclient.list_abilities()
    assert len(abilities) == 8
    assert all(isinstance(a, Ability) for a in abilities)
    prompt = next(a for a in abilities if a.id == PROMPT)
    assert prompt.display_name == "提示词提取"
    assert prompt.capability_key == "prompt_extract"
    assert prompt.provider == "coze"
    assert prompt.status == "active"
    url = prompt.input_schema.fields[0]
    assert (url.name, url.type, url.required) == ("url", "string", True)


async def test_get_ability(aclient: AsyncClient) -> None:
    ability = await aclient.get_ability(GEN)
    assert ability.id == GEN
    assert [f.name for f in ability.input_schema.fields] == ["url", "height", "width", "prompt"]


async def test_unknown_ability_is_not_found(aclient: AsyncClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        await aclient.get_ability("ability_nope")
    assert caught.value.status_code == 404


async def test_invoke_a_sync_ability_returns_the_result(
    aclient: AsyncClient, sample_image: str
) -> None:
    result = await aclient.invoke_ability(
        PROMPT, {"url": sample_image, "shuru": "水彩风格"}, metadata={"orderId": 7}
    )
    assert isinstance(result, InvokeResult)
    assert result.status == "succeeded"
    assert result.ability_id == PROMPT
    assert result.texts
    assert result.texts[0]
    assert result.task_id.startswith("task_")
    assert result.metadata["client"] == {"orderId": 7}
    assert isinstance(result.log_id, int)
    task = await aclient.get_task_status(result.task_id)
    assert isinstance(task, Task)
    assert (task.id, task.status, task.texts) == (result.task_id, "succeeded", result.texts)
    assert task.create_time.tzinfo is not None
    assert task.is_terminal
    assert (await aclient.get_task(result.task_id)).id == task.id


async def test_respond_async_gives_202_then_wait_for_task(
    aclient: AsyncClient, sample_image: str
) -> None:
    accepted = await aclient.invoke_ability(PROMPT, {"url": sample_image}, respond_async=True)
    assert accepted.status == "queued"
    assert not accepted.is_terminal
    task = await aclient.wait_for_task(accepted.task_id, poll_interval=0.05, timeout=30)
    assert task.status == "succeeded"
    assert task.texts


async def test_generation_answers_202_and_wait_for_task_gives_its_images(
    live: LiveFactory,
) -> None:
    async with live("--job-seconds", "0.2") as gw:
        token = gw.headers["Authorization"].removeprefix("Bearer ")
        async with AsyncClient(gw.url, token) as client:
            accepted = await client.invoke_ability(GEN, gen_inputs(gw.sim_url))
            assert accepted.status in ("queued", "running")
            task = await client.wait_for_task(accepted.task_id, poll_interval=0.05, timeout=30)
    assert task.status == "succeeded"
    assert task.texts == ["图片生成完成"]
    assert len(task.images) == 4
    assert all(isinstance(m, Media) and m.oss_url for m in task.images)
    assert task.images[0].oss_url.startswith(f"{gw.url}/media/")  # type: ignore[union-attr]


async def test_invoke_and_wait_answered_at_once(aclient: AsyncClient, sample_image: str) -> None:
    result = await aclient.invoke_and_wait(PROMPT, {"url": sample_image})
    assert result.status == "succeeded"
    assert result.duration_ms is not None
    assert result.texts


async def test_invoke_and_wait_follows_a_202(live: LiveFactory) -> None:
    async with live("--job-seconds", "0.2") as gw:
        token = gw.headers["Authorization"].removeprefix("Bearer ")
        async with AsyncClient(gw.url, token) as client:
            result = await client.invoke_and_wait(
                GEN, gen_inputs(gw.sim_url), metadata={"k": 1}, timeout=30, max_interval=0.1
            )
            task = await client.get_task_status(result.task_id)
    assert result.status == "succeeded"
    assert result.ability_id == GEN
    assert result.provider == "coze"
    assert result.texts == ["图片生成完成"] == task.texts
    assert [m.oss_url for m in result.images] == [m.oss_url for m in task.images]
    assert result.metadata["externalJobId"].startswith("job_")
    assert result.metadata["client"] == {"k": 1}
    assert result.request_id == task.request_id


async def test_invoke_and_wait_of_a_canceled_task_is_a_conflict(
    aclient: AsyncClient, sim_url: str
) -> None:
    waiting = asyncio.create_task(
        aclient.invoke_and_wait(GEN, gen_inputs(sim_url), timeout=30, max_interval=0.05)
    )
    tasks: list[Task] = []
    for _ in range(200):  # the invoke lands, then we cancel it
        tasks = [t async for t in aclient.list_tasks(ability_id=GEN)]
        if tasks:
            break
        await asyncio.sleep(0.02)
    await aclient.cancel_task(tasks[0].id)
    with pytest.raises(ConflictError) as caught:
        await waiting
    assert caught.value.task_id == tasks[0].id
    assert caught.value.status == "canceled"
    assert caught.value.status_code == 409


async def test_invoke_and_wait_past_the_ability_deadline_is_504(
    live: LiveFactory, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        """
abilities:
  - id: quick_gen
    displayName: 限时生图
    capabilityKey: quick_gen
    workflowId: "7597701996124045312"
    mode: external_job
    imageField: url
    output: {kind: external_job}
    timeoutSeconds: 1
    retryAfterSeconds: 1
    externalJob: {notify: true}
    inputs:
      - {name: url, type: string, required: true}
      - {name: width, type: number, required: true}
      - {name: height, type: number, required: true}
      - {name: prompt, type: string, required: true}
""",
        encoding="utf-8",
    )
    async with live("--job-seconds", "30", catalog_file=catalog) as gw:
        token = gw.headers["Authorization"].removeprefix("Bearer ")
        async with AsyncClient(gw.url, token) as client:
            with pytest.raises(GatewayTimeoutError) as caught:
                await client.invoke_and_wait(
                    "quick_gen", gen_inputs(gw.sim_url), timeout=30, poll_interval=0.1
                )
    error = caught.value
    assert (error.status_code, error.code, error.status) == (504, 504, "timeout")
    assert error.task_id
    assert error.task_id.startswith("task_")


async def test_wait_for_task_gives_up_after_its_timeout(aclient: AsyncClient, sim_url: str) -> None:
    accepted = await aclient.invoke_ability(GEN, gen_inputs(sim_url))  # a 5 s job
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(GatewayTimeoutError) as caught:
        await aclient.wait_for_task(accepted.task_id, timeout=0.3, poll_interval=0.05)
    assert loop.time() - started < 2
    error = caught.value
    assert error.status_code is None  # the SDK's own deadline, not the gateway's 504
    assert error.task_id == accepted.task_id
    assert error.status in ("queued", "running")
    assert (await aclient.cancel_task(accepted.task_id)).status == "canceled"


async def test_list_tasks_iterates_across_pages(
    app: Any, token: CreatedToken, sample_image: str
) -> None:
    client, transport = recording_client(app, token)
    async with client:
        invoked = [
            (await client.invoke_ability(PROMPT, {"url": sample_image}, respond_async=True))
            for _ in range(5)
        ]
        transport.requests.clear()
        listed = [task async for task in client.list_tasks(page_size=2)]
    assert [t.id for t in listed] == [r.task_id for r in reversed(invoked)]  # newest first
    pages = [r for r in transport.requests if r.url.path == "/api/ability_tasks"]
    assert len(pages) == 3
    assert [r.url.params.get("limit") for r in pages] == ["2", "2", "2"]
    assert "cursor" not in pages[0].url.params
    assert pages[1].url.params["cursor"]
    assert pages[2].url.params["cursor"]


async def test_list_tasks_filters(aclient: AsyncClient, sample_image: str, sim_url: str) -> None:
    done = await aclient.invoke_ability(PROMPT, {"url": sample_image})
    generating = await aclient.invoke_ability(GEN, gen_inputs(sim_url))
    by_ability = [t.id async for t in aclient.list_tasks(ability_id=PROMPT)]
    by_status = [t.id async for t in aclient.list_tasks(status="succeeded")]
    page = await aclient.list_tasks_page(page_size=1)
    assert by_ability == [done.task_id]
    assert by_status == [done.task_id]
    assert [t.id for t in page.items] == [generating.task_id]
    assert page.next_cursor
    await aclient.cancel_task(generating.task_id)


async def test_cancel_a_task_then_again_is_a_conflict(aclient: AsyncClient, sim_url: str) -> None:
    accepted = await aclient.invoke_ability(GEN, gen_inputs(sim_url))
    canceled = await aclient.cancel_task(accepted.task_id)
    assert canceled.status == "canceled"
    assert canceled.error_message == "The task was canceled"
    with pytest.raises(ConflictError) as caught:
        await aclient.cancel_task(accepted.task_id)
    assert (caught.value.task_id, caught.value.status) == (accepted.task_id, "canceled")


async def test_a_retried_invoke_returns_the_same_task(
    app: Any, token: CreatedToken, sample_image: str
) -> None:
    client, transport = recording_client(app, token, drop_first_invoke=True)
    async with client:
        result = await client.invoke_ability(PROMPT, {"url": sample_image})
        tasks = [t async for t in client.list_tasks()]
    invokes = [r for r in transport.requests if r.url.path.endswith("/invoke")]
    assert len(invokes) == 2
    keys = {r.headers["idempotency-key"] for r in invokes}
    assert len(keys) == 1
    assert keys != {""}
    assert transport.dropped is not None
    assert result.task_id == transport.dropped["metadata"]["taskId"]
    assert [t.id for t in tasks] == [result.task_id]  # the ability ran once


async def test_each_invoke_has_its_own_key_unless_given(
    app: Any, token: CreatedToken, sample_image: str
) -> None:
    client, transport = recording_client(app, token)
    async with client:
        first = await client.invoke_ability(PROMPT, {"url": sample_image})
        second = await client.invoke_ability(PROMPT, {"url": sample_image})
        mine = await client.invoke_ability(PROMPT, {"url": sample_image}, idempotency_key="o-1")
        again = await client.invoke_ability(PROMPT, {"url": sample_image}, idempotency_key="o-1")
    keys = [r.headers["idempotency-key"] for r in transport.requests]
    assert len(set(keys[:2])) == 2
    assert keys[2:] == ["o-1", "o-1"]
    assert first.task_id != second.task_id
    assert mine.task_id == again.task_id


async def test_requests_carry_the_user_agent_and_prefer(
    app: Any, token: CreatedToken, sample_image: str
) -> None:
    from ability_gateway import __version__

    client, transport = recording_client(app, token)
    async with client:
        await client.invoke_ability(PROMPT, {"url": sample_image}, wait=12.5)
        await client.invoke_ability(PROMPT, {"url": sample_image}, respond_async=True)
        await client.invoke_and_wait(PROMPT, {"url": sample_image}, timeout=20)
    assert transport.requests[0].headers["user-agent"] == f"ability-gateway-python/{__version__}"
    prefer = [r.headers.get("prefer") for r in transport.requests]
    assert prefer == ["wait=12.5", "respond-async", "wait=20"]


async def test_image_path_is_sent_as_a_data_url(live: LiveFactory, tmp_path: Path) -> None:
    async with live() as gw:
        image = write_png(tmp_path / "photo.bin", gw.sim_url)  # the type comes from the bytes
        token = gw.headers["Authorization"].removeprefix("Bearer ")
        async with AsyncClient(gw.url, token) as client:
            result = await client.invoke_ability(OUTPAINT, EXPAND, image_path=image)
        async with httpx.AsyncClient() as plain:
            output = (await plain.get(result.images[0].oss_url or "")).content
    # The workflow read our image: its output is 512 + 10 + 20 wide.
    assert png_size(output) == (542, 512)


async def test_image_base64_is_passed_through(live: LiveFactory, tmp_path: Path) -> None:
    async with live() as gw:
        png = write_png(tmp_path / "photo.png", gw.sim_url).read_bytes()
        token = gw.headers["Authorization"].removeprefix("Bearer ")
        async with AsyncClient(gw.url, token) as client:
            result = await client.invoke_ability(
                OUTPAINT,
                EXPAND,
                image_base64="data:image/png;base64," + base64.b64encode(png).decode(),
            )
    assert result.status == "succeeded"
    assert len(result.images) == 1


async def test_callbacks_are_listed_redelivered_and_verify(
    aclient: AsyncClient, token: CreatedToken, sample_image: str
) -> None:
    with Receiver() as receiver:
        result = await aclient.invoke_ability(
            PROMPT,
            {"url": sample_image},
            callback_url=receiver.url,
            callback_headers={"X-Order": "7"},
        )
        for _ in range(500):
            deliveries = await aclient.get_callbacks(result.task_id)
            if deliveries.delivery and deliveries.delivery.state == "delivered":
                break
            await asyncio.sleep(0.02)
        assert deliveries.delivery is not None
        assert deliveries.delivery.state == "delivered"
        assert deliveries.delivery.url == receiver.url
        assert [a.http_status for a in deliveries.attempts] == [200]
        again = await aclient.redeliver_callback(result.task_id)
        requests = await receiver.wait(2)
    assert [a.manual for a in again.attempts] == [False, True]
    task = await aclient.get_task_status(result.task_id)
    assert task.callback is not None
    assert task.callback.id == deliveries.delivery.id

    dedupe = CallbackDeduplicator()
    handled = []
    for request in requests:
        headers: Any = request["headers"]
        payload = verify_callback(str(request["body"]), headers, token.callback_secret)
        assert payload.webhook_id == deliveries.delivery.id
        if not dedupe.seen(payload.webhook_id or ""):
            handled.append(payload)
        assert headers["X-Order"] == "7"
    assert len(handled) == 1
    assert handled[0].task_id == result.task_id
    assert handled[0].status == "succeeded"
    assert handled[0].texts == result.texts


async def test_no_callback_means_no_delivery(aclient: AsyncClient, sample_image: str) -> None:
    result = await aclient.invoke_ability(PROMPT, {"url": sample_image})
    deliveries = await aclient.get_callbacks(result.task_id)
    assert deliveries.delivery is None
    assert deliveries.attempts == []


class Blips(httpx.AsyncBaseTransport):
    """The real transport, but the first polls of a task fail: no connection, then a 503."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.failed = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if (
            request.method == "GET"
            and "/api/ability_tasks/" in request.url.path
            and self.failed < 6
        ):
            self.failed += 1
            if self.failed % 2:
                raise httpx.ConnectError("connection refused", request=request)
            return httpx.Response(503, json={"code": 503, "message": "busy", "requestId": "r"})
        return await self.inner.handle_async_request(request)


async def test_wait_for_task_rides_out_blips(
    app: Any, token: CreatedToken, sample_image: str
) -> None:
    transport = Blips(httpx.ASGITransport(app=app))
    async with AsyncClient(
        "http://gateway", token.token, transport=transport, max_retries=0
    ) as client:
        accepted = await client.invoke_ability(PROMPT, {"url": sample_image}, respond_async=True)
        task = await client.wait_for_task(accepted.task_id, poll_interval=0.05, timeout=30)
    assert transport.failed == 6
    assert task.status == "succeeded"


class Statuses(httpx.AsyncBaseTransport):
    """The real transport, with the status of every answer recorded."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.seen: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.seen.append(response.status_code)
        return response


async def test_a_503_from_an_unavailable_database_is_retried_after_retry_after(
    tmp_path: Path, sim_url: str, sample_image: str
) -> None:
    path = tmp_path / "gateway.db"
    settings = make_settings(
        tmp_path,
        sim_url,
        database_url=f"sqlite+aiosqlite:///{path}",
        sqlite_busy_timeout_seconds=0.2,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        created = await create_token(app.state.gateway.db, "sdk")
        transport = Statuses(httpx.ASGITransport(app=app))
        async with AsyncClient("http://gateway", created.token, transport=transport) as client:
            lock = sqlite3.connect(path, timeout=10, isolation_level=None)
            lock.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            try:
                invoking = asyncio.ensure_future(
                    client.invoke_ability(PROMPT, {"url": sample_image})
                )
                while not transport.seen:
                    await asyncio.sleep(0.02)
            finally:
                lock.rollback()
                lock.close()
            result = await invoking
    assert transport.seen == [503, 200]
    assert result.status == "succeeded"
