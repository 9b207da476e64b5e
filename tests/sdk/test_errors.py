"""Every error answer raises its typed exception, built from the gateway's one error body."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from ability_gateway import (
    APIConnectionError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    CallbackVerificationError,
    Client,
    ConflictError,
    GatewayError,
    GatewayTimeoutError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    UpstreamError,
    error_from_response,
)
from tests.conftest import make_settings
from tests.sdk.conftest import EXPAND, OUTPAINT, PROMPT, gateway_app, write_png
from tests.server.conftest import LiveFactory
from tests.support import free_port, simulator_process


async def test_bad_request_has_the_field_errors(aclient: AsyncClient) -> None:
    with pytest.raises(BadRequestError) as caught:
        await aclient.invoke_ability("ability_coze_upscale_8k", {"bianchang": 0})
    error = caught.value
    assert (error.status_code, error.code) == (400, 400)
    assert error.errors == [
        {"field": "inputs.url", "problem": "is required"},
        {"field": "inputs.bianchang", "problem": "must be greater than 0"},
    ]
    assert error.request_id
    assert error.request_id == error.body["requestId"]
    assert "inputs.url is required" in str(error)


async def test_a_bad_list_filter_is_a_bad_request(aclient: AsyncClient) -> None:
    with pytest.raises(BadRequestError) as caught:
        await aclient.list_tasks_page(status="sleeping")
    assert [e["field"] for e in caught.value.errors] == ["status"]


async def test_a_bad_token_is_an_authentication_error(app: Any) -> None:
    transport = httpx.ASGITransport(app=app)
    async with AsyncClient("http://gateway", "agw_wrong", transport=transport) as client:
        with pytest.raises(AuthenticationError) as caught:
            await client.list_abilities()
    assert (caught.value.status_code, caught.value.code) == (401, 401)


async def test_unknown_things_are_not_found(aclient: AsyncClient) -> None:
    for call in (
        aclient.get_ability("ability_nope"),
        aclient.invoke_ability("ability_nope", {}),
        aclient.get_task_status("task_nope"),
        aclient.get_task_status("../abilities"),  # ids are quoted into the path
        aclient.cancel_task("task_nope"),
        aclient.get_callbacks("task_nope"),
    ):
        with pytest.raises(NotFoundError) as caught:
            await call
        assert caught.value.status_code == 404


async def test_cancel_of_a_finished_task_is_a_conflict(
    aclient: AsyncClient, sample_image: str
) -> None:
    done = await aclient.invoke_ability(PROMPT, {"url": sample_image})
    with pytest.raises(ConflictError) as caught:
        await aclient.cancel_task(done.task_id)
    error = caught.value
    assert (error.status_code, error.task_id, error.status) == (409, done.task_id, "succeeded")


async def test_a_reused_idempotency_key_is_a_conflict(
    aclient: AsyncClient, sample_image: str
) -> None:
    first = await aclient.invoke_ability(PROMPT, {"url": sample_image}, idempotency_key="k-1")
    with pytest.raises(ConflictError) as caught:
        await aclient.invoke_ability(
            PROMPT, {"url": sample_image, "shuru": "x"}, idempotency_key="k-1"
        )
    assert caught.value.task_id == first.task_id


async def test_a_too_large_image_is_payload_too_large(live: LiveFactory, tmp_path: Path) -> None:
    async with live(max_image_bytes=1000) as gw:
        image = write_png(tmp_path / "big.png", gw.sim_url)
        token = gw.headers["Authorization"].removeprefix("Bearer ")
        async with AsyncClient(gw.url, token) as client:
            with pytest.raises(PayloadTooLargeError) as caught:
                await client.invoke_ability(OUTPAINT, EXPAND, image_path=image)
    assert (caught.value.status_code, caught.value.code) == (413, 413)


async def test_a_failed_workflow_is_an_upstream_error(tmp_path: Path, sample_image: str) -> None:
    with simulator_process("--fail-rate", "1") as failing:
        settings = make_settings(tmp_path, failing, coze_max_retries=0)
        async with gateway_app(settings) as (client, _):
            with pytest.raises(UpstreamError) as caught:
                await client.invoke_ability(PROMPT, {"url": sample_image})
            task = await client.get_task_status(caught.value.task_id or "")
    error = caught.value
    assert (error.status_code, error.code, error.status) == (502, 720701013, "failed")
    assert error.debug_url == task.error_payload["debugUrl"]  # type: ignore[index]
    assert error.log_id == task.log_id
    assert task.status == "failed"
    assert "code 720701013" in str(error)
    assert f"task {error.task_id}" in str(error)


async def test_no_executor_is_service_unavailable(tmp_path: Path, sample_image: str) -> None:
    settings = make_settings(tmp_path, "http://127.0.0.1:1", coze_api_token=None)
    async with gateway_app(settings) as (client, _):
        with pytest.raises(ServiceUnavailableError) as caught:
            await client.invoke_ability(PROMPT, {"url": sample_image})
    assert caught.value.status_code == 503


async def test_nothing_listening_is_an_api_connection_error() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", "agw_x", max_retries=1) as client:
        with pytest.raises(APIConnectionError) as caught:
            await client.get_task_status("task_x")
    assert "after 2 attempts" in str(caught.value)


# --- answers the gateway gives rarely (or not yet): from mocked transports -----------------


def answer(status: int, body: Any = None, **headers: str) -> httpx.Response:
    request = httpx.Request("GET", "http://gateway/api/abilities")
    if isinstance(body, dict):
        return httpx.Response(status, json=body, headers=headers, request=request)
    return httpx.Response(status, content=body or b"", headers=headers, request=request)


def body(code: int, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": "nope", "requestId": "req_1", **extra}


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (413, PayloadTooLargeError),
        (429, RateLimitError),
        (500, GatewayError),
        (502, UpstreamError),
        (503, ServiceUnavailableError),
        (504, GatewayTimeoutError),
        (418, GatewayError),
    ],
)
def test_each_status_has_its_exception(status: int, cls: type[GatewayError]) -> None:
    error = error_from_response(answer(status, body(status)))
    assert type(error) is cls
    assert isinstance(error, GatewayError)
    assert (error.status_code, error.code, error.request_id) == (status, status, "req_1")


def test_rate_limit_reads_retry_after_seconds_or_date() -> None:
    in_seconds = error_from_response(answer(429, body(429), **{"Retry-After": "7"}))
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    by_date = error_from_response(answer(429, body(429), **{"Retry-After": later}))
    without = error_from_response(answer(429, body(429)))
    assert isinstance(in_seconds, RateLimitError)
    assert in_seconds.retry_after == 7
    assert isinstance(by_date, RateLimitError)
    assert 25 < (by_date.retry_after or 0) <= 30
    assert isinstance(without, RateLimitError)
    assert without.retry_after is None
    assert "retry after 7 s" in str(in_seconds)


def test_a_body_that_is_not_the_gateways_is_kept_in_the_message() -> None:
    error = error_from_response(
        answer(502, b"<html>Bad Gateway</html>", **{"X-Request-ID": "req_p"})
    )
    assert isinstance(error, UpstreamError)
    assert (error.code, error.request_id, error.task_id) == (502, "req_p", None)
    assert "HTTP 502 Bad Gateway: <html>Bad Gateway</html>" in error.message


def test_a_429_is_raised_not_slept_on() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(429, json=body(429), headers={"Retry-After": "30"})

    with Client("http://gateway", "agw_x", transport=httpx.MockTransport(handler)) as client:
        started = time.monotonic()
        with pytest.raises(RateLimitError) as caught:
            client.invoke_ability(PROMPT, {"url": "https://e.com/a.png"})
    assert time.monotonic() - started < 1
    assert caught.value.retry_after == 30
    assert len(calls) == 1


def task_json(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": "task_1",
        "abilityId": PROMPT,
        "status": status,
        "requestId": "req_1",
        "logId": 3,
        "createTime": "2026-01-22T10:00:00Z",
        "updateTime": "2026-01-22T10:01:00Z",
        "resultPayload": {"texts": ["ok"]} if status == "succeeded" else None,
        "errorPayload": None,
        **extra,
    }


def test_wait_for_task_honours_retry_after_and_waits_out_a_429() -> None:
    answers = [
        httpx.Response(200, json=task_json("running"), headers={"Retry-After": "0.1"}),
        httpx.Response(429, json=body(429), headers={"Retry-After": "0.1"}),
        httpx.Response(200, json=task_json("succeeded")),
    ]
    times: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        return answers.pop(0)

    with Client("http://gateway", "agw_x", transport=httpx.MockTransport(handler)) as client:
        # Without the hint, the second poll would come after poll_interval (5 s).
        task = client.wait_for_task("task_1", poll_interval=5, timeout=20)
    assert task.status == "succeeded"
    assert task.texts == ["ok"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.09 <= gap < 1 for gap in gaps)


def test_a_429_beyond_the_deadline_is_raised() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json=body(429), headers={"Retry-After": "60"})

    client = Client("http://gateway", "agw_x", transport=httpx.MockTransport(handler))
    with client, pytest.raises(RateLimitError):
        client.wait_for_task("task_1", timeout=1)


def test_a_retry_after_is_capped_by_max_interval() -> None:
    answers = [
        httpx.Response(200, json=task_json("running"), headers={"Retry-After": "60"}),
        httpx.Response(200, json=task_json("failed", errorPayload={"message": "boom"})),
    ]
    with Client(
        "http://gateway", "agw_x", transport=httpx.MockTransport(lambda _: answers.pop(0))
    ) as client:
        started = time.monotonic()
        task = client.wait_for_task("task_1", max_interval=0.1)
    assert time.monotonic() - started < 1
    assert task.status == "failed"  # returned whatever its status
    assert task.error_message == "boom"


def test_a_redelivery_is_not_repeated_once_it_may_have_been_sent() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadError("connection reset", request=request)

    with Client("http://gateway", "agw_x", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(APIConnectionError):
            client.redeliver_callback("task_1")
        assert len(calls) == 1  # not repeated: it could send the callback twice
        with pytest.raises(APIConnectionError):
            client.get_callbacks("task_1")
        assert len(calls) == 1 + 3  # a read is repeated max_retries times


def test_a_cancel_whose_answer_was_lost_is_not_a_conflict() -> None:
    answers: list[Any] = [
        httpx.ReadError("connection reset"),  # the gateway canceled; the answer was lost
        httpx.Response(409, json=body(409, taskId="task_1", status="canceled")),
        httpx.Response(200, json=task_json("canceled")),
    ]

    def handler(request: httpx.Request) -> httpx.Response:
        item = answers.pop(0)
        if isinstance(item, Exception):
            raise item
        return item  # type: ignore[no-any-return]

    with Client("http://gateway", "agw_x", transport=httpx.MockTransport(handler)) as client:
        assert client.cancel_task("task_1").status == "canceled"


async def test_async_client_maps_errors_the_same_way() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            502,
            json=body(720701013, taskId="task_9", logId=4, debugUrl="https://d", status="failed"),
        )

    async with AsyncClient("http://gateway", "agw_x", transport=httpx.MockTransport(handler)) as c:
        with pytest.raises(UpstreamError) as caught:
            await c.invoke_ability(PROMPT, {})
    error = caught.value
    assert (error.code, error.task_id, error.log_id, error.debug_url) == (
        720701013,
        "task_9",
        4,
        "https://d",
    )


def test_every_exception_is_a_gateway_error() -> None:
    for cls in (APIConnectionError, CallbackVerificationError, GatewayTimeoutError):
        assert issubclass(cls, GatewayError)


@pytest.mark.parametrize(
    ("retry_after", "redeliver", "calls"),
    [
        ("0", False, 1 + 2),  # a short Retry-After: repeated max_retries times
        (None, False, 1),  # no Retry-After (e.g. no executor configured): raised at once
        ("60", False, 1),  # longer than RETRY_AFTER_MAX: the caller decides
        ("0", True, 1),  # a redelivery is never repeated
    ],
)
def test_which_503_answers_are_retried(
    retry_after: str | None, redeliver: bool, calls: int
) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        return httpx.Response(503, json=body(503), headers=headers)

    client = Client("http://gateway", "agw_x", transport=httpx.MockTransport(handler))
    call = client.redeliver_callback if redeliver else client.get_task_status
    with client, pytest.raises(ServiceUnavailableError):
        call("task_1")
    assert len(seen) == calls
