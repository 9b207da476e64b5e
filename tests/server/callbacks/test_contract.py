"""A delivered callback body is what the published OpenAPI document says under `webhooks`,
for a task that succeeded and one that failed (the invoke answers and task views of these
tests are checked by the test client's contract hook)."""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator

from tests.contract import document
from tests.server.conftest import LiveFactory
from tests.support import Receiver


def webhook_validator() -> Draft202012Validator:
    doc = document()
    schema = doc["webhooks"]["taskEnded"]["post"]["requestBody"]["content"]["application/json"]
    return Draft202012Validator({**schema["schema"], "components": doc["components"]})


def delivered(request: dict[str, Any]) -> dict[str, Any]:
    body = request["body"]
    return json.loads(body if isinstance(body, str | bytes) else json.dumps(body))


async def test_a_succeeded_and_a_failed_task_call_back_in_the_published_shape(
    live: LiveFactory,
) -> None:
    validator = webhook_validator()
    with Receiver() as receiver:
        async with live(egress_allow="127.0.0.0/8") as gw:
            image = f"{gw.sim_url}/files/samples/square.png"
            ok = await gw.invoke(
                "ability_coze_prompt_extract",
                {"inputs": {"url": image}, "callbackUrl": receiver.url},
            )
            assert ok.status_code == 200, ok.text
            failed = await gw.invoke(  # the simulator cannot read this image: a 502
                "ability_coze_upscale_8k",
                {
                    "inputs": {"url": f"{gw.sim_url}/files/missing.png", "bianchang": 64},
                    "callbackUrl": receiver.url,
                },
            )
            assert failed.status_code == 502, failed.text
            requests = await receiver.wait(2)
    bodies = {b["status"]: b for b in map(delivered, requests)}
    assert set(bodies) == {"succeeded", "failed"}
    for body in bodies.values():
        problems = [e.message for e in validator.iter_errors(body)]
        assert problems == [], (body, problems)
    assert bodies["succeeded"]["texts"]
    assert bodies["failed"]["errorCode"] == failed.json()["code"]
