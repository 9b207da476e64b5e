"""Callbacks over real HTTP: signed, on the schedule, recorded, redeliverable, SSRF-guarded."""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from ability_gateway.server.auth.service import create_token
from tests.server.conftest import Live, LiveFactory
from tests.support import Receiver

PROMPT = "ability_coze_prompt_extract"
GEN = "ability_coze_image_gen_4step"
FAST = "0.3,0.6,0.9,1.2,1.5"


async def secret_of(gw: Live) -> str:
    created = await create_token(gw.state.db, "cb")
    gw.headers = {"Authorization": f"Bearer {created.token}"}
    return created.callback_secret


def image(gw: Live) -> str:
    return f"{gw.sim_url}/files/samples/square.png"


async def test_a_finished_task_calls_back_signed_with_the_spec_payload(live: LiveFactory) -> None:
    with Receiver() as receiver:
        async with live(egress_allow="127.0.0.0/8") as gw:
            secret = await secret_of(gw)
            response = await gw.invoke(
                PROMPT,
                {
                    "inputs": {"url": image(gw)},
                    "callbackUrl": receiver.url,
                    "callbackHeaders": {"X-Custom-Header": "your-custom-value"},
                    "metadata": {"orderId": 7},
                },
            )
            assert response.status_code == 200
            result = response.json()
            [request] = await receiver.wait(1)
            headers: dict[str, str] = request["headers"]  # type: ignore[assignment]
            payload = Webhook(secret).verify(request["body"], headers)  # type: ignore[arg-type]
            assert headers["X-Custom-Header"] == "your-custom-value"
            assert headers["Content-Type"] == "application/json"
            assert headers["User-Agent"].startswith("ability-gateway/")
            assert headers["webhook-id"].startswith("msg_")
            assert list(payload) == [
                "requestId",
                "taskId",
                "abilityId",
                "status",
                "durationMs",
                "texts",
                "images",
                "videos",
                "assets",
                "metadata",
                "errorMessage",
                "errorCode",
            ]
            assert payload["taskId"] == result["metadata"]["taskId"]
            assert payload["requestId"] == result["requestId"]
            assert payload["status"] == "succeeded"
            assert payload["texts"] == result["texts"]
            assert payload["metadata"]["client"] == {"orderId": 7}
            assert payload["errorMessage"] is None
            task = await _until_delivery(gw, payload["taskId"], "delivered")
            assert task["callback"] == {
                "id": headers["webhook-id"],
                "state": "delivered",
                "attempts": 1,
            }
            listed = await _callbacks(gw, payload["taskId"])
            assert listed["delivery"]["state"] == "delivered"
            assert listed["delivery"]["id"] == headers["webhook-id"]
            [attempt] = listed["attempts"]
            assert attempt["httpStatus"] == 200
            assert attempt["manual"] is False
            assert json.loads(attempt["response"]) == {"code": 0, "message": "success"}


async def test_failures_are_retried_on_the_schedule_then_exhausted(live: LiveFactory) -> None:
    with Receiver(default=(500, {"error": "down"}, 0.0)) as receiver:
        async with live(egress_allow="127.0.0.0/8", callback_retry_schedule=FAST) as gw:
            await secret_of(gw)
            response = await gw.invoke(
                PROMPT, {"inputs": {"url": image(gw)}, "callbackUrl": receiver.url}
            )
            task_id = response.json()["metadata"]["taskId"]
            requests = await receiver.wait(6, timeout=30)
            task = await _until_delivery(gw, task_id, "exhausted")
            listed = await _callbacks(gw, task_id)
    assert task["callback"]["attempts"] == 6
    assert len({r["headers"]["webhook-id"] for r in requests}) == 1  # type: ignore[index]
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(requests)]  # type: ignore[operator]
    for gap, scheduled in zip(gaps, [0.3, 0.6, 0.9, 1.2, 1.5], strict=True):
        assert gap >= scheduled - 0.05  # never early
        assert gap <= scheduled + 2.0  # at most a little late
    assert [a["httpStatus"] for a in listed["attempts"]] == [500] * 6
    assert [a["number"] for a in listed["attempts"]] == [1, 2, 3, 4, 5, 6]
    assert listed["delivery"]["lastError"] == "HTTP 500"
    assert listed["delivery"]["nextAttemptTime"] is None


@pytest.mark.parametrize(
    ("answer", "delivered"),
    [
        ((200, {"code": 0, "message": "success"}, 0.0), True),
        ((200, {"code": 1, "message": "not yet"}, 0.0), False),
        ((200, "ok, thanks", 0.0), True),
        ((204, "", 0.0), True),
        ((410, {"gone": True}, 0.0), False),
        ((200, {"code": False}, 0.0), False),
        ((200, {"code": "0"}, 0.0), True),
        ((200, '{"code": 1, "pad": "' + "x" * 100_000 + '"}', 0.0), False),  # over the cap
        ((200, "\u0000 binary \u0000", 0.0), True),  # stored escaped (PostgreSQL refuses NUL)
    ],
)
async def test_what_counts_as_delivered(
    live: LiveFactory, answer: tuple[int, Any, float], delivered: bool
) -> None:
    with Receiver(default=answer) as receiver:
        async with live(egress_allow="127.0.0.0/8", callback_retry_schedule="60") as gw:
            await secret_of(gw)
            response = await gw.invoke(
                PROMPT, {"inputs": {"url": image(gw)}, "callbackUrl": receiver.url}
            )
            task_id = response.json()["metadata"]["taskId"]
            expected = "delivered" if delivered else ("gone" if answer[0] == 410 else "pending")
            task = await _until_delivery(gw, task_id, expected, attempts=1)
    assert task["callback"]["attempts"] == 1


async def test_a_redirect_is_a_failure_and_is_not_followed(live: LiveFactory) -> None:
    with Receiver(default=(302, "http://127.0.0.1:9/elsewhere", 0.0)) as receiver:
        async with live(egress_allow="127.0.0.0/8", callback_retry_schedule="60") as gw:
            await secret_of(gw)
            response = await gw.invoke(
                PROMPT, {"inputs": {"url": image(gw)}, "callbackUrl": receiver.url}
            )
            task_id = response.json()["metadata"]["taskId"]
            await _until_delivery(gw, task_id, "pending", attempts=1)
            listed = await _callbacks(gw, task_id)
    assert listed["attempts"][0]["httpStatus"] == 302
    assert listed["attempts"][0]["error"] == "HTTP 302: redirects are not followed"
    assert [r["path"] for r in receiver.requests] == ["/callback"]


async def test_redeliver_sends_once_more_with_the_same_webhook_id(live: LiveFactory) -> None:
    script = [(500, {"e": 1}, 0.0)] * 2
    with Receiver(script=script) as receiver:
        async with live(egress_allow="127.0.0.0/8", callback_retry_schedule="0.2") as gw:
            await secret_of(gw)
            response = await gw.invoke(
                PROMPT, {"inputs": {"url": image(gw)}, "callbackUrl": receiver.url}
            )
            task_id = response.json()["metadata"]["taskId"]
            await _until_delivery(gw, task_id, "exhausted")
            again = await gw.client.post(
                f"/api/ability_tasks/{task_id}/callbacks/redeliver", headers=gw.headers
            )
            assert again.status_code == 200, again.text
            body = again.json()
    assert body["delivery"]["state"] == "delivered"
    assert body["delivery"]["attemptCount"] == 2  # a manual attempt is outside the schedule
    assert [a["manual"] for a in body["attempts"]] == [False, False, True]
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1  # type: ignore[index]
    assert len(receiver.requests) == 3


async def test_canceled_and_failed_tasks_call_back_too(live: LiveFactory) -> None:
    with Receiver() as receiver:
        async with live("--job-seconds", "30", egress_allow="127.0.0.0/8") as gw:
            secret = await secret_of(gw)
            inputs = {"url": image(gw), "width": 64, "height": 64, "prompt": "猫"}
            response = await gw.invoke(GEN, {"inputs": inputs, "callbackUrl": receiver.url})
            task_id = response.json()["metadata"]["taskId"]
            canceled = await gw.client.post(
                f"/api/ability_tasks/{task_id}/cancel", headers=gw.headers
            )
            assert canceled.status_code == 200
            [request] = await receiver.wait(1)
    payload = Webhook(secret).verify(request["body"], request["headers"])  # type: ignore[arg-type]
    assert payload["status"] == "canceled"
    assert payload["errorMessage"] == "The task was canceled"
    assert payload["errorCode"] == 499
    assert payload["texts"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/cb",
        "http://2130706433/cb",
        "http://0177.0.0.1/cb",
        "http://[::ffff:127.0.0.1]/cb",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5/cb",
    ],
)
async def test_a_callback_url_at_a_refused_address_is_400(live: LiveFactory, url: str) -> None:
    async with live(egress_allow="") as gw:
        response = await gw.invoke(PROMPT, {"inputs": {"url": image(gw)}, "callbackUrl": url})
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": "callbackUrl",
            "problem": "points at a private, loopback or otherwise non-public address "
            "(an operator may allow internal networks: GATEWAY_EGRESS_ALLOW)",
        }
    ]


async def test_a_name_resolving_to_a_refused_address_fails_at_send_time(live: LiveFactory) -> None:
    with Receiver() as receiver:
        # The simulator is a Coze on this machine: it may read the loopback image URL.
        async with live(
            callback_retry_schedule="60", egress_allow="", coze_allow_internal_image_urls=True
        ) as gw:
            await secret_of(gw)
            url = f"http://localhost:{receiver.port}/callback"
            response = await gw.invoke(PROMPT, {"inputs": {"url": image(gw)}, "callbackUrl": url})
            assert response.status_code == 200
            task_id = response.json()["metadata"]["taskId"]
            await _until_delivery(gw, task_id, "pending", attempts=1)
            listed = await _callbacks(gw, task_id)
    assert receiver.requests == []
    assert listed["attempts"][0]["httpStatus"] is None
    assert listed["attempts"][0]["error"] == "refused: not a public address"


async def test_callbacks_endpoints_show_only_the_tokens_own_tasks(live: LiveFactory) -> None:
    async with live() as gw:
        response = await gw.invoke(PROMPT, {"inputs": {"url": image(gw)}})
        task_id = response.json()["metadata"]["taskId"]
        none = await _callbacks(gw, task_id)
        assert none == {"delivery": None, "attempts": []}
        missing = await gw.client.post(
            f"/api/ability_tasks/{task_id}/callbacks/redeliver", headers=gw.headers
        )
        assert missing.status_code == 404
        other = await create_token(gw.state.db, "other")
        foreign = await gw.client.get(
            f"/api/ability_tasks/{task_id}/callbacks",
            headers={"Authorization": f"Bearer {other.token}"},
        )
        assert foreign.status_code == 404
        assert foreign.json()["code"] == 404


async def _callbacks(gw: Live, task_id: str) -> dict[str, Any]:
    response = await gw.client.get(f"/api/ability_tasks/{task_id}/callbacks", headers=gw.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _until_delivery(
    gw: Live, task_id: str, state: str, attempts: int | None = None, timeout: float = 30
) -> dict[str, Any]:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        task = await gw.task(task_id)
        callback = task.get("callback")
        if (
            callback
            and callback["state"] == state
            and (attempts is None or callback["attempts"] >= attempts)
        ):
            return task
        assert loop.time() < deadline, f"callback still {callback}"
        await asyncio.sleep(0.05)


__all__ = ["httpx"]
