"""Body caps per route class, enforced before any endpoint reads (or verifies) a body.

Against a real gateway on loopback, with bodies sent by hand: a declared Content-Length over
the cap is refused before a byte of the body is sent, and a chunked body is cut off at the
cap, so the server never holds more than the cap of an oversized upload.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from ability_gateway.server.bodylimit import DEFAULT_BODY_BYTES, INVOKE_BODY_BYTES
from tests.server.conftest import Live, LiveFactory
from tests.server.rawhttp import Exchange, MiB, chunked, exchange, filler

NOTICE = "/api/provider_callbacks/coze/job_x"
INVOKE = "/api/abilities/ability_coze_prompt_extract/invoke"


def head(path: str, *lines: str) -> bytes:
    return "\r\n".join([f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *lines, "", ""]).encode()


async def send(gw: Live, request: bytes, parts: object = ()) -> Exchange:
    port = urlsplit(gw.url).port
    assert port is not None
    return await asyncio.to_thread(exchange, port, request, parts)  # type: ignore[arg-type]


def assert_413(answer: Exchange, cap: int) -> None:
    assert answer.status == 413, answer.answer[:300]
    body = answer.json()
    assert body["code"] == 413
    assert body["message"] == f"The request body is larger than {cap} bytes"
    assert body["requestId"] == answer.headers["x-request-id"]
    assert answer.closed  # the rest of the upload is not read


async def test_a_notice_declaring_a_gigabyte_is_413_before_its_body_is_sent(
    live: LiveFactory,
) -> None:
    async with live() as gw:
        answer = await send(gw, head(NOTICE, f"Content-Length: {1024 * MiB}"))
        assert_413(answer, DEFAULT_BODY_BYTES)
        assert answer.seconds < 5


async def test_a_chunked_notice_of_fifty_megabytes_is_cut_off_at_the_cap(
    live: LiveFactory,
) -> None:
    async with live() as gw:
        request = head(NOTICE, "Transfer-Encoding: chunked", "Content-Type: application/json")
        answer = await send(gw, request, chunked(filler(50 * MiB)))
        assert_413(answer, DEFAULT_BODY_BYTES)
        # Answered while the sender was still sending: 1 MB read, a few MB in socket buffers.
        assert answer.sent < 16 * MiB, answer.sent


async def test_an_invoke_keeps_its_twenty_megabyte_cap(live: LiveFactory) -> None:
    async with live() as gw:
        over = await send(gw, head(INVOKE, f"Content-Length: {INVOKE_BODY_BYTES + 1}"))
        assert_413(over, INVOKE_BODY_BYTES)
        # Over the default cap but within the invoke class's: the endpoint reads it.
        body = b'{"inputs": {"url": "' + b"a" * (2 * MiB) + b'"}}'
        within = await gw.client.post(INVOKE, content=body, headers=gw.headers)
        assert within.status_code == 400, within.text
        assert within.json()["errors"][0]["field"] == "inputs.url"


async def test_a_chunked_invoke_over_its_cap_is_cut_off(live: LiveFactory) -> None:
    async with live() as gw:
        request = head(INVOKE, "Transfer-Encoding: chunked", gw_auth(gw))
        answer = await send(gw, request, chunked(filler(60 * MiB)))
        assert_413(answer, INVOKE_BODY_BYTES)
        assert answer.sent < INVOKE_BODY_BYTES + 16 * MiB, answer.sent


async def test_routes_no_class_names_get_the_default_cap(live: LiveFactory) -> None:
    async with live() as gw:
        answer = await send(
            gw,
            head("/api/ability_tasks/task_x/callbacks/redeliver", f"Content-Length: {2 * MiB}"),
        )
        assert_413(answer, DEFAULT_BODY_BYTES)


def gw_auth(gw: Live) -> str:
    return f"Authorization: {gw.headers['Authorization']}"
