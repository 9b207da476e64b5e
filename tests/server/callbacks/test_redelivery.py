"""Manual redelivery is rate-limited per task and its attempts do not pile up."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from ability_gateway.server.auth.service import create_token
from tests.server.conftest import Live, LiveFactory
from tests.support import Receiver

PROMPT = "ability_coze_prompt_extract"


async def _delivered_task(gw: Live, receiver: Receiver) -> str:
    created = await create_token(gw.state.db, "cb")
    gw.headers = {"Authorization": f"Bearer {created.token}"}
    response = await gw.invoke(
        PROMPT,
        {"inputs": {"url": f"{gw.sim_url}/files/samples/square.png"}, "callbackUrl": receiver.url},
    )
    assert response.status_code == 200, response.text
    task_id: str = response.json()["metadata"]["taskId"]
    await receiver.wait(1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while (await gw.task(task_id)).get("callback", {}).get("state") not in (
        "delivered",
        "exhausted",
    ):
        assert loop.time() < deadline, "the scheduled delivery did not end"
        await asyncio.sleep(0.05)
    return task_id


async def _redeliver(gw: Live, task_id: str) -> httpx.Response:
    return await gw.client.post(
        f"/api/ability_tasks/{task_id}/callbacks/redeliver", headers=gw.headers
    )


def _assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["retry-after"]) <= 60
    body: dict[str, Any] = response.json()
    assert body["code"] == 429
    assert body["message"]
    assert "requestId" in body


async def test_fifty_rapid_redeliveries_send_only_the_allowed_few(live: LiveFactory) -> None:
    with Receiver() as receiver:
        async with live(egress_allow="127.0.0.0/8", callback_redeliver_per_minute=3) as gw:
            task_id = await _delivered_task(gw, receiver)
            answers = [await _redeliver(gw, task_id) for _ in range(50)]
            await asyncio.sleep(0.2)  # anything sent late would have arrived by now
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    for refused in answers[3:]:
        _assert_limited(refused)
    assert len(receiver.requests) == 1 + 3  # the scheduled attempt and three manual ones


async def test_only_one_manual_redelivery_of_a_task_is_in_flight(live: LiveFactory) -> None:
    slow = (200, {"code": 0}, 1.0)
    with Receiver(script=[(200, {"code": 0}, 0.0)], default=slow) as receiver:
        async with live(egress_allow="127.0.0.0/8", callback_redeliver_per_minute=100) as gw:
            task_id = await _delivered_task(gw, receiver)
            answers = await asyncio.gather(*(_redeliver(gw, task_id) for _ in range(10)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [429] * 9
    for refused in answers:
        if refused.status_code == 429:
            _assert_limited(refused)
    assert len(receiver.requests) == 2


async def test_the_attempts_list_keeps_every_scheduled_attempt_and_the_latest_manual_ones(
    live: LiveFactory,
) -> None:
    script = [(500, {"e": 1}, 0.0)] * 2
    with Receiver(script=script) as receiver:
        async with live(
            egress_allow="127.0.0.0/8",
            callback_retry_schedule="0.2",
            callback_redeliver_per_minute=100,
            callback_manual_attempts_kept=3,
        ) as gw:
            task_id = await _delivered_task(gw, receiver)
            for _ in range(6):
                answer = await _redeliver(gw, task_id)
                assert answer.status_code == 200, answer.text
            attempts = answer.json()["attempts"]
    assert [(a["number"], a["manual"]) for a in attempts] == [
        (1, False),
        (2, False),
        (6, True),
        (7, True),
        (8, True),
    ]
    assert len(receiver.requests) == 2 + 6
