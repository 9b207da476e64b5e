"""NUL and control characters from callers: a 400 naming the field, never a 500 (both databases).

PostgreSQL refuses NUL in text, so before the guard ``?abilityId=%00`` or a ``callbackUrl``
holding ``\\u0000`` answered 500 there.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ability_gateway.server.input_guard import json_body_problems

PROMPT = "/api/abilities/ability_coze_prompt_extract/invoke"


def assert_refused(response: httpx.Response, field: str, problem: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == 400
    assert body["requestId"] == response.headers["x-request-id"]
    assert {"field": field, "problem": problem} in body["errors"], body


NUL = "must not contain NUL characters"
NUL_KEY = "is a key holding a NUL character"
CONTROL = "must not contain control characters"


@pytest.mark.parametrize(
    ("method", "url", "field", "problem"),
    [
        ("GET", "/api/ability_tasks/%00", "path", NUL),
        ("GET", "/api/ability_tasks/task_%01", "path", CONTROL),
        ("POST", "/api/abilities/%00/invoke", "path", NUL),
        ("POST", "/api/ability_tasks/task_%7f/cancel", "path", CONTROL),
        ("GET", "/api/ability_tasks/x%00/callbacks", "path", NUL),
        ("GET", "/media/2024/01/a%00.png", "path", NUL),
        ("GET", "/api/ability_tasks?abilityId=%00", "abilityId", NUL),
        ("GET", "/api/ability_tasks?abilityId=ability%0A", "abilityId", CONTROL),
        ("GET", "/api/ability_tasks?cursor=%1b", "cursor", CONTROL),
        ("GET", "/api/ability_tasks?limit=1&a%00=1", "a\\u0000", NUL),
        ("GET", "/api/abilities?x=%00", "x", NUL),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("/") else None,
)
async def test_control_characters_in_path_or_query_are_400(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    method: str,
    url: str,
    field: str,
    problem: str,
) -> None:
    assert_refused(await client.request(method, url, headers=auth), field, problem)


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("x-trace", "a\x00b", NUL),
        ("idempotency-key", "key\x01", CONTROL),
        ("prefer", "wait=1\x7f", CONTROL),
        ("user-agent", "agent\r\nx", CONTROL),
    ],
)
async def test_control_characters_in_a_header_are_400(
    client: httpx.AsyncClient, auth: dict[str, str], name: str, value: str, problem: str
) -> None:
    response = await client.get("/api/ability_tasks", headers={**auth, name: value})
    assert_refused(response, name, problem)


async def test_nul_in_the_authorization_header_is_400_not_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/abilities", headers={"Authorization": "Bearer \x00"})
    assert_refused(response, "authorization", NUL)


async def test_a_tab_in_a_header_value_is_allowed(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    response = await client.get("/api/ability_tasks", headers={**auth, "x-note": "a\tb"})
    assert response.status_code == 200, response.text


def _payload(image: str, **extra: Any) -> dict[str, Any]:
    return {"inputs": {"url": image}, **extra}


@pytest.mark.parametrize(
    ("extra", "field", "problem"),
    [
        ({"callbackUrl": "http://localhost:1/\x00"}, "callbackUrl", NUL),
        ({"callbackUrl": "http://127.0.0.1:1/\x01"}, "callbackUrl", CONTROL),
        ({"imageUrl": "http://127.0.0.1:1/a\x1b.png"}, "imageUrl", CONTROL),
        ({"executorId": "default\x07"}, "executorId", CONTROL),
        ({"executorId": "\x00"}, "executorId", NUL),
        ({"metadata": {"note": "a\x00"}}, "metadata.note", NUL),
        ({"metadata": {"a": {"b": [1, {"c": ["ok", "\x00"]}]}}}, "metadata.a.b.1.c.1", NUL),
        ({"metadata": {"a\x00b": 1}}, "metadata.a\\u0000b", NUL_KEY),
        ({"metadata": {"a": [{"\x00": None}]}}, "metadata.a.0.\\u0000", NUL_KEY),
        ({"callbackHeaders": {"X-A": "\x00"}}, "callbackHeaders.X-A", NUL),
        ({"imageBase64": "data:image/png;base64,\x00"}, "imageBase64", NUL),
        ({"\x00": 1}, "\\u0000", NUL_KEY),
    ],
)
async def test_nul_or_control_characters_in_the_body_are_400(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    sample_image: str,
    extra: dict[str, Any],
    field: str,
    problem: str,
) -> None:
    response = await client.post(PROMPT, json=_payload(sample_image, **extra), headers=auth)
    assert_refused(response, field, problem)


@pytest.mark.parametrize(
    ("inputs", "field", "problem"),
    [
        ({"shuru": "\x00"}, "inputs.shuru", NUL),
        ({"shuru": {"deep": ["x\x00"]}}, "inputs.shuru.deep.0", NUL),
        ({"sh\x00uru": "x"}, "inputs.sh\\u0000uru", NUL_KEY),
        ({"url\x00": "x"}, "inputs.url\\u0000", NUL_KEY),
    ],
)
async def test_nul_in_inputs_is_400(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    sample_image: str,
    inputs: dict[str, Any],
    field: str,
    problem: str,
) -> None:
    payload = {"inputs": {"url": sample_image, **inputs}}
    assert_refused(await client.post(PROMPT, json=payload, headers=auth), field, problem)


async def test_a_control_character_in_a_url_input_is_400(
    client: httpx.AsyncClient, auth: dict[str, str], sample_image: str
) -> None:
    payload = {"inputs": {"url": sample_image + "\x01"}}
    response = await client.post(PROMPT, json=payload, headers=auth)
    assert_refused(response, "inputs.url", "must be an http(s) URL")


async def test_tabs_and_newlines_in_free_text_are_kept(
    client: httpx.AsyncClient, auth: dict[str, str], sample_image: str
) -> None:
    text = "line one\r\nline\ttwo\n"
    payload = {"inputs": {"url": sample_image, "shuru": text}, "metadata": {"note": text}}
    response = await client.post(PROMPT, json=payload, headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["client"] == {"note": text}
    task = await client.get(
        f"/api/ability_tasks/{response.json()['metadata']['taskId']}", headers=auth
    )
    assert task.status_code == 200
    assert task.json()["resultPayload"]["metadata"]["client"] == {"note": text}


def test_deeply_nested_bodies_are_walked_without_recursion() -> None:
    deep: Any = "\x00"
    for _ in range(5000):
        deep = [deep]
    assert json_body_problems({"metadata": deep}) == [
        {"field": "metadata" + ".0" * 5000, "problem": NUL}
    ]
