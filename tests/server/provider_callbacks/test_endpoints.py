"""Completion notices over real HTTP: the body names its job, a replay is inert, and a
signed body that is not a notice is a 400 in our words (never a 500, never a 401)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from ability_gateway.server.models import media, tasks
from ability_gateway.simulator.notices import secret_key, sign
from tests.server.conftest import Live, LiveFactory
from tests.support import NOTICE_SECRET

GEN = "ability_coze_image_gen_4step"
# Words of the standardwebhooks library and of Python's json module: a 401 or 400 that
# carries them echoes a library's internals.
LIBRARY_WORDS = (
    "Invalid Signature Headers",
    "No matching signature found",
    "Missing required headers",
    "Expecting value",
    "Incorrect padding",
    "not enough values to unpack",
    "codec can't decode",
    "Message timestamp",
)


def signed(body: bytes, msg_id: str = "msg_1", at: float | None = None) -> dict[str, str]:
    """Headers of a notice signed as the simulator signs it (Standard Webhooks v1)."""
    stamp = int(time.time() if at is None else at)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret_key(NOTICE_SECRET), msg_id, stamp, body),
        "content-type": "application/json",
    }


def notice(external_id: str, **fields: Any) -> bytes:
    return orjson.dumps({"externalId": external_id, "status": "succeeded", **fields})


async def post(gw: Live, external_id: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await gw.client.post(
        f"/api/provider_callbacks/coze/{external_id}", content=body, headers=headers
    )


async def running_generation(gw: Live) -> tuple[str, str]:
    """A generation task waiting on its job (the simulator's own notice is 30 s away)."""
    response = await gw.invoke(
        GEN,
        {
            "inputs": {
                "url": f"{gw.sim_url}/files/samples/square.png",
                "width": 640,
                "height": 320,
                "prompt": "一只猫",
            }
        },
        Prefer="respond-async",
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["metadata"]["taskId"]
    for _ in range(400):
        async with gw.state.db.read() as conn:
            external = (
                await conn.execute(select(tasks.c.external_id).where(tasks.c.id == task_id))
            ).scalar()
        if external:
            return task_id, str(external)
        await asyncio.sleep(0.025)
    raise AssertionError("the task never recorded its job id")


def assert_clear(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == status
    assert body["requestId"] == response.headers["x-request-id"]
    assert not any(word in response.text for word in LIBRARY_WORDS), response.text
    return body


async def test_a_notice_for_one_job_posted_to_another_is_400_and_ends_nothing(
    live: LiveFactory,
) -> None:
    async with live("--job-seconds", "30") as gw:
        first_task, first_job = await running_generation(gw)
        second_task, second_job = await running_generation(gw)
        captured = notice(first_job, images=[], texts=["done"])
        headers = signed(captured, "msg_e1")
        response = await post(gw, second_job, captured, headers)
        body = assert_clear(response, 400)
        assert body["errors"] == [
            {"field": "externalId", "problem": "must be the job id in the path"}
        ]
        assert (await gw.task(second_task))["status"] == "running"
        # Posted where it belongs, the same notice ends its own task.
        assert (await post(gw, first_job, captured, headers)).status_code == 200
        assert (await gw.task(first_task))["status"] == "succeeded"
        assert (await gw.task(second_task))["status"] == "running"


async def test_a_notice_that_does_not_name_its_job_is_400(live: LiveFactory) -> None:
    async with live("--job-seconds", "30") as gw:
        task_id, job = await running_generation(gw)
        unnamed = orjson.dumps({"status": "succeeded", "images": []})
        response = await post(gw, job, unnamed, signed(unnamed))
        body = assert_clear(response, 400)
        assert body["errors"] == [{"field": "externalId", "problem": "is required"}]
        assert (await gw.task(task_id))["status"] == "running"


async def test_a_replayed_notice_is_already_received_and_changes_nothing(
    live: LiveFactory,
) -> None:
    async with live("--job-seconds", "30") as gw:
        task_id, job = await running_generation(gw)
        image = f"{gw.sim_url}/files/samples/square.png"
        captured = notice(job, images=[image], texts=["done"])
        headers = signed(captured, "msg_replayed")
        first = await post(gw, job, captured, headers)
        assert first.status_code == 200, first.text
        assert first.json() == {"code": 0, "message": "ok"}
        task = await gw.task(task_id)
        assert task["status"] == "succeeded"

        async def media_rows() -> list[tuple[Any, ...]]:
            async with gw.state.db.read() as conn:
                rows = await conn.execute(select(media.c.key, media.c.last_used_at))
                return [tuple(row) for row in rows]

        stored = await media_rows()
        assert len(stored) == 1
        await asyncio.sleep(0.05)  # a write now would move last_used_at
        again = await post(gw, job, captured, headers)
        assert again.status_code == 200, again.text
        assert again.json() == {"code": 0, "message": "already received"}
        assert await gw.task(task_id) == task
        assert await media_rows() == stored  # its images were not fetched and stored again


async def test_a_deeply_nested_signed_notice_is_400(live: LiveFactory) -> None:
    async with live() as gw:
        deep = b"[" * 100_000
        body = assert_clear(await post(gw, "job_1", deep, signed(deep)), 400)
        assert body["message"] == "The notice is not valid JSON"
        assert body["errors"][0]["field"] == "body"


@pytest.mark.parametrize(
    "raw", [b"not json", b'{"status": "succeeded"', b"\xff\xfe{}", b"", b"[1, 2]"]
)
async def test_a_signed_body_that_is_not_a_json_object_is_400(
    live: LiveFactory, raw: bytes
) -> None:
    async with live() as gw:
        body = assert_clear(await post(gw, "job_1", raw, signed(raw)), 400)
        assert body["message"] in (
            "The notice is not valid JSON",
            "The notice must be a JSON object",
        )
        assert body["errors"][0]["field"] == "body"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "msg_1", "webhook-timestamp": "soon", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "msg_1", "webhook-timestamp": "nan", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "msg_1", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "msg_1", "webhook-timestamp": "NOW", "webhook-signature": "v1"},
        {"webhook-id": "msg_1", "webhook-timestamp": "NOW", "webhook-signature": "v1,%%%"},
        {"webhook-id": "msg_1", "webhook-timestamp": "NOW", "webhook-signature": "v1,AAAA"},
    ],
)
async def test_a_bad_signature_is_401_in_the_gateways_own_words(
    live: LiveFactory, headers: dict[str, str]
) -> None:
    async with live() as gw:
        sent = {k: str(int(time.time())) if v == "NOW" else v for k, v in headers.items()}
        for raw in (b'{"status": "succeeded"}', b"\xff not utf-8"):
            body = assert_clear(await post(gw, "job_1", raw, sent), 401)
            assert body["message"].startswith("The notice")


async def test_a_thirty_digit_integer_in_a_notice_does_not_fail_the_task(
    live: LiveFactory,
) -> None:
    async with live("--job-seconds", "30") as gw:
        task_id, job = await running_generation(gw)
        big = notice(job, images=[], texts=["done"]).replace(
            b"}", b', "seed": 123456789012345678901234567890}'
        )
        assert (await post(gw, job, big, signed(big))).status_code == 200
        task = await gw.task(task_id)
        assert task["status"] == "succeeded", task["errorPayload"]
        assert task["resultPayload"]["texts"] == ["done"]


async def test_a_notice_too_deep_to_store_is_400_and_its_task_goes_on(live: LiveFactory) -> None:
    async with live("--job-seconds", "30") as gw:
        task_id, job = await running_generation(gw)
        deep = notice(job, images=[]).replace(b"}", b', "trace": ' + b"[" * 300 + b"]" * 300 + b"}")
        body = assert_clear(await post(gw, job, deep, signed(deep)), 400)
        assert body["errors"] == [{"field": "body", "problem": "nests deeper than 254 levels"}]
        assert (await gw.task(task_id))["status"] == "running"
