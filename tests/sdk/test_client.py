"""Client (blocking) against a real ``ability-gateway serve`` process, and against in-process
gateways over real HTTP (the blocking calls then run in a thread)."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest

from ability_gateway import (
    Ability,
    APIConnectionError,
    Client,
    ConflictError,
    GatewayTimeoutError,
    InvokeResult,
    NotFoundError,
    Task,
    UpstreamError,
)
from tests.conftest import LiveGateway
from tests.sdk.conftest import EXPAND, GEN, OUTPAINT, PROMPT, gen_inputs, write_png
from tests.server.conftest import Live, LiveFactory
from tests.support import free_port


class Recording(httpx.BaseTransport):
    """The real transport, with every request recorded and chosen failures injected."""

    def __init__(self, *, drop_first_invoke: bool = False, refuse_first_get: bool = False) -> None:
        self.inner = httpx.HTTPTransport()
        self.requests: list[httpx.Request] = []
        self.drop_first_invoke = drop_first_invoke
        self.refuse_first_get = refuse_first_get
        self.dropped: dict[str, Any] | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.refuse_first_get and request.method == "GET":
            self.refuse_first_get = False
            raise httpx.ConnectError("Connection refused", request=request)
        response = self.inner.handle_request(request)
        if self.drop_first_invoke and request.url.path.endswith("/invoke") and not self.dropped:
            self.dropped = json.loads(response.read())
            response.close()
            raise httpx.RemoteProtocolError("Server disconnected", request=request)
        return response

    def close(self) -> None:
        self.inner.close()


def client_for(gw: Live, **kwargs: Any) -> Client:
    return Client(gw.url, gw.headers["Authorization"].removeprefix("Bearer "), **kwargs)


def png_size(data: bytes) -> tuple[int, int]:
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_list_and_get_abilities(sclient: Client) -> None:
    abilities = sclient.list_abilities()
    assert len(abilities) == 8
    assert all(isinstance(a, Ability) for a in abilities)
    ability = sclient.get_ability(PROMPT)
    assert ability == next(a for a in abilities if a.id == PROMPT)
    assert ability.display_name == "提示词提取"
    with pytest.raises(NotFoundError):
        sclient.get_ability("ability_nope")


def test_invoke_a_sync_ability(sclient: Client, sample_image: str) -> None:
    result = sclient.invoke_ability(PROMPT, {"url": sample_image, "shuru": ""})
    assert isinstance(result, InvokeResult)
    assert result.status == "succeeded"
    assert result.texts
    assert result.raw
    task = sclient.get_task_status(result.task_id)
    assert isinstance(task, Task)
    assert task.status == "succeeded"
    assert task.texts == result.texts
    assert task.log_id == result.log_id


def test_invoke_with_image_url(sclient: Client, sample_image: str) -> None:
    result = sclient.invoke_ability(PROMPT, image_url=sample_image)
    assert result.status == "succeeded"


def test_respond_async_then_wait_for_task(sclient: Client, sample_image: str) -> None:
    accepted = sclient.invoke_ability(PROMPT, {"url": sample_image}, respond_async=True)
    assert accepted.status == "queued"
    task = sclient.wait_for_task(accepted.task_id, poll_interval=0.05, timeout=30)
    assert task.status == "succeeded"
    assert task.texts


def test_invoke_and_wait_answered_at_once(sclient: Client, sample_image: str) -> None:
    result = sclient.invoke_and_wait(PROMPT, {"url": sample_image})
    assert result.status == "succeeded"
    assert result.texts


def test_invoke_and_wait_follows_a_202(sclient: Client, sample_image: str) -> None:
    result = sclient.invoke_and_wait(
        PROMPT, {"url": sample_image}, respond_async=True, timeout=30, max_interval=0.1
    )
    task = sclient.get_task(result.task_id)
    assert result.status == "succeeded"
    assert result.texts == task.texts
    assert result.ability_id == PROMPT


async def test_generation_202_then_wait_for_task(live: LiveFactory) -> None:
    async with live("--job-seconds", "0.2") as gw:

        def run() -> tuple[InvokeResult, Task, InvokeResult]:
            with client_for(gw) as client:
                accepted = client.invoke_ability(GEN, gen_inputs(gw.sim_url))
                task = client.wait_for_task(accepted.task_id, poll_interval=0.05, timeout=30)
                waited = client.invoke_and_wait(GEN, gen_inputs(gw.sim_url), max_interval=0.1)
                return accepted, task, waited

        accepted, task, waited = await asyncio.to_thread(run)
    assert accepted.status in ("queued", "running")
    assert task.status == "succeeded"
    assert len(task.images) == 4
    assert task.images[0].url == task.images[0].oss_url
    assert waited.status == "succeeded"
    assert len(waited.images) == 4


def test_cancel_then_again_is_a_conflict(sclient: Client, sim_url: str) -> None:
    accepted = sclient.invoke_ability(GEN, gen_inputs(sim_url))  # a 5 s job
    assert sclient.cancel_task(accepted.task_id).status == "canceled"
    with pytest.raises(ConflictError) as caught:
        sclient.cancel_task(accepted.task_id)
    assert caught.value.task_id == accepted.task_id
    assert caught.value.status == "canceled"


def test_wait_for_task_gives_up_after_its_timeout(sclient: Client, sim_url: str) -> None:
    accepted = sclient.invoke_ability(GEN, gen_inputs(sim_url))
    with pytest.raises(GatewayTimeoutError) as caught:
        sclient.wait_for_task(accepted.task_id, timeout=0.2, poll_interval=0.05)
    assert caught.value.status_code is None
    assert caught.value.task_id == accepted.task_id
    sclient.cancel_task(accepted.task_id)


def test_list_tasks_iterates_across_pages(live_gateway: LiveGateway, sample_image: str) -> None:
    transport = Recording()
    with Client(live_gateway.url, live_gateway.token, transport=transport) as client:
        ids = [
            client.invoke_ability(PROMPT, {"url": sample_image}, respond_async=True).task_id
            for _ in range(5)
        ]
        transport.requests.clear()
        listed = client.list_tasks(page_size=2)
        first_five = [next(listed).id for _ in range(5)]
        pages = len(transport.requests)
    assert first_five == ids[::-1]  # newest first
    assert pages == 3  # fetched lazily: three pages of two for five tasks


def test_a_retried_invoke_returns_the_same_task(
    live_gateway: LiveGateway, sample_image: str
) -> None:
    transport = Recording(drop_first_invoke=True)
    with Client(live_gateway.url, live_gateway.token, transport=transport) as client:
        result = client.invoke_ability(PROMPT, {"url": sample_image})
    invokes = [r for r in transport.requests if r.url.path.endswith("/invoke")]
    assert len(invokes) == 2
    assert invokes[0].headers["idempotency-key"] == invokes[1].headers["idempotency-key"]
    assert transport.dropped is not None
    assert result.task_id == transport.dropped["metadata"]["taskId"]


def test_a_refused_get_is_retried(live_gateway: LiveGateway) -> None:
    transport = Recording(refuse_first_get=True)
    with Client(live_gateway.url, live_gateway.token, transport=transport) as client:
        assert client.get_ability(PROMPT).id == PROMPT
    assert len(transport.requests) == 2


def test_nothing_listening_is_an_api_connection_error() -> None:
    seen: list[httpx.Request] = []
    transport = httpx.HTTPTransport()

    class Counting(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return transport.handle_request(request)

    url = f"http://127.0.0.1:{free_port()}"
    client = Client(url, "agw_x", max_retries=2, transport=Counting())
    with client, pytest.raises(APIConnectionError) as caught:
        client.list_abilities()
    assert len(seen) == 3
    assert caught.value.status_code is None
    assert url in str(caught.value)
    assert "after 3 attempts" in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_image_path_reads_a_png(sclient: Client, sim_url: str, tmp_path: Path) -> None:
    image = write_png(tmp_path / "photo.png", sim_url)
    result = sclient.invoke_ability(OUTPAINT, EXPAND, image_path=image)
    output = httpx.get(result.images[0].oss_url or "").content
    assert png_size(output) == (542, 512)


def test_image_arguments_are_checked(sclient: Client, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    with pytest.raises(ValueError, match="not a PNG, JPEG, WebP or GIF"):
        sclient.invoke_ability(OUTPAINT, EXPAND, image_path=text)
    with pytest.raises(ValueError, match="at most one of"):
        sclient.invoke_ability(OUTPAINT, EXPAND, image_url="https://e.com/a.png", image_path=text)
    with pytest.raises(ValueError, match="wait or respond_async"):
        sclient.invoke_ability(PROMPT, {}, wait=5, respond_async=True)


async def test_a_failed_task_raises_the_same_error_either_way(live: LiveFactory) -> None:
    async with live("--fail-rate", "1", coze_max_retries=0) as gw:

        def run() -> tuple[UpstreamError, UpstreamError]:
            errors = []
            with client_for(gw) as client:
                for respond_async in (False, True):
                    with pytest.raises(UpstreamError) as caught:
                        client.invoke_and_wait(
                            PROMPT,
                            {"url": f"{gw.sim_url}/files/samples/square.png"},
                            respond_async=respond_async,
                            max_interval=0.05,
                        )
                    errors.append(caught.value)
            return errors[0], errors[1]

        at_once, after_wait = await asyncio.to_thread(run)
    for error in (at_once, after_wait):
        assert (error.status_code, error.code, error.status) == (502, 720701013, "failed")
        assert error.debug_url
        assert error.debug_url.startswith("https://www.coze.cn/work_flow")
        assert error.task_id
        assert error.log_id
    assert at_once.message == after_wait.message
    assert set(at_once.body) == set(after_wait.body)


def test_base_url_and_token_come_from_the_environment(
    live_gateway: LiveGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GATEWAY_URL", live_gateway.url + "/")
    monkeypatch.setenv("GATEWAY_TOKEN", live_gateway.token)
    with Client() as client:
        assert client.base_url == live_gateway.url
        assert client.get_ability(PROMPT).id == PROMPT
    monkeypatch.delenv("GATEWAY_TOKEN")
    with pytest.raises(ValueError, match="GATEWAY_TOKEN"):
        Client()
    monkeypatch.delenv("GATEWAY_URL")
    with pytest.raises(ValueError, match="GATEWAY_URL"):
        Client(token="agw_x")
