"""Quotas: a daily cap per token and per ability (429 with Retry-After and the quota named),
what counts (a new task, a cache hit) and what does not (a replay, a 4xx), the cap held under
concurrency and across two nodes on one database, and the media bytes quota."""

from __future__ import annotations

import asyncio
import base64
import math
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select

from ability_gateway.server.models import media
from ability_gateway.server.usage.quotas import day_window
from tests.server.conftest import LiveFactory
from tests.server.media.test_images import png
from tests.server.usage.conftest import (
    PROMPT,
    TAGGING,
    UPSCALE,
    Gateway,
    bearer,
    gateway_app,
)


def assert_quota_refusal(response: httpx.Response, quota: str, limit: int) -> dict[str, object]:
    assert response.status_code == 429, response.text
    body: dict[str, object] = response.json()
    assert (body["code"], body["quota"], body["limit"]) == (429, quota, limit)
    assert body["requestId"] == response.headers["x-request-id"]
    return body


async def test_a_daily_quota_of_n_takes_n_and_refuses_the_next_until_midnight(
    tmp_path: Path, sim_url: str
) -> None:
    async with gateway_app(tmp_path, sim_url, quota_timezone="Asia/Shanghai") as gw:
        app = await gw.token(daily_invocations=2)
        answers = [await gw.invoke(app, wish=str(n)) for n in range(3)]
    assert [a.status_code for a in answers[:2]] == [200, 200]
    refused = answers[2]
    body = assert_quota_refusal(refused, "dailyInvocations", 2)
    window = day_window(int(time.time() * 1000), "Asia/Shanghai")
    assert body["resetsAt"] == window.resets_at
    assert body["message"] == (
        f"Daily quota of 2 invocations for this token is used up (resets {window.resets_at})"
    )
    retry_after = int(refused.headers["retry-after"])
    expected = math.ceil(window.end_ms / 1000 - time.time())
    assert expected - 5 <= retry_after <= expected + 1


async def test_a_replay_and_a_bad_request_do_not_count_a_cache_hit_does(
    tmp_path: Path, sim_url: str
) -> None:
    async with gateway_app(tmp_path, sim_url) as gw:
        app = await gw.token(daily_invocations=3)
        first = await gw.invoke(app, wish="x", **{"Idempotency-Key": "k1"})
        replayed = await gw.invoke(app, wish="x", **{"Idempotency-Key": "k1"})
        bad = await gw.client.post(
            f"/api/abilities/{PROMPT}/invoke", json={"inputs": {}}, headers=bearer(app)
        )
        hit = await gw.invoke(app, wish="x")  # same inputs: from the cache
        third = await gw.invoke(app, wish="y")
        fourth = await gw.invoke(app, wish="z")
        [quota] = (await gw.usage(app))["quotas"]
    assert (first.status_code, replayed.status_code, bad.status_code) == (200, 200, 400)
    assert replayed.json()["metadata"]["taskId"] == first.json()["metadata"]["taskId"]
    assert (hit.status_code, hit.headers["x-cache"]) == (200, "HIT")
    assert third.status_code == 200
    assert_quota_refusal(fourth, "dailyInvocations", 3)
    assert quota["dailyInvocations"] == {"limit": 3, "used": 3}


async def test_a_per_ability_quota_refuses_that_ability_only(tmp_path: Path, sim_url: str) -> None:
    async with gateway_app(tmp_path, sim_url) as gw:
        app = await gw.token(daily_invocations=10, daily_by_ability={PROMPT: 1})
        first = await gw.invoke(app, wish="a")
        second = await gw.invoke(app, wish="b")
        other = await gw.invoke(app, TAGGING)
        [quota] = (await gw.usage(app))["quotas"]
    assert (first.status_code, other.status_code) == (200, 200)
    body = assert_quota_refusal(second, "dailyInvocationsByAbility", 1)
    assert body["abilityId"] == PROMPT
    assert f"1 invocations of {PROMPT!r}" in str(body["message"])
    # The refused invocation's unit of the daily total was given back with its transaction.
    assert quota["dailyInvocations"] == {"limit": 10, "used": 2}


async def test_concurrent_invokes_at_the_edge_never_pass_the_cap(
    tmp_path: Path, sim_url: str
) -> None:
    async with gateway_app(tmp_path, sim_url) as gw:
        app = await gw.token(daily_invocations=3)
        answers = await asyncio.gather(*(gw.invoke(app, wish=f"c{n}") for n in range(12)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 3 + [429] * 9


async def test_two_nodes_on_one_database_take_the_last_units_once(
    tmp_path: Path, sim_url: str
) -> None:
    async with gateway_app(tmp_path, sim_url) as one:
        url = one.state.settings.resolved_database_url
        async with gateway_app(tmp_path, sim_url, database_url=url) as two:
            app = await one.token(daily_invocations=4)
            answers = await asyncio.gather(
                *(node.invoke(app, wish=f"n{n}") for n in range(8) for node in (one, two))
            )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 4 + [429] * 12


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


async def stored_media(gw: Gateway) -> int:
    async with gw.state.db.read() as conn:
        return int((await conn.execute(select(func.count()).select_from(media))).scalar_one())


async def test_an_upload_over_the_media_quota_is_429_and_not_stored(live: LiveFactory) -> None:
    image = png(64, 64)
    async with live() as served:  # over HTTP: the simulator reads the upload from the gateway
        gw = Gateway(served.client, served.state, served.sim_url)
        app = await gw.token(media_bytes=len(image) - 1)
        roomy = await gw.token("roomy", media_bytes=len(image))
        payload = {"imageBase64": data_url(image), "inputs": {"shuru": "up"}}
        url = f"/api/abilities/{PROMPT}/invoke"
        refused = await gw.client.post(url, json=payload, headers=bearer(app))
        stored_after_refusal = await stored_media(gw)
        taken = await gw.client.post(url, json=payload, headers=bearer(roomy))
        again_payload = {**payload, "inputs": {"shuru": "again"}}
        again = await gw.client.post(url, json=again_payload, headers=bearer(roomy))
        [quota] = (await gw.usage(roomy))["quotas"]
    body = assert_quota_refusal(refused, "mediaBytes", len(image) - 1)
    assert body["used"] == 0
    assert stored_after_refusal == 0
    assert taken.status_code == 200, taken.text
    assert again.status_code == 200, again.text  # the same content is not counted twice
    assert quota["mediaBytes"] == {"limit": len(image), "used": len(image)}


async def test_an_upload_after_the_daily_quota_is_used_up_is_refused_before_it_is_stored(
    live: LiveFactory,
) -> None:
    async with live() as served:
        gw = Gateway(served.client, served.state, served.sim_url)
        app = await gw.token(daily_invocations=1)
        url = f"/api/abilities/{PROMPT}/invoke"
        first = {"imageBase64": data_url(png(64, 64)), "inputs": {"shuru": "one"}}
        taken = await gw.client.post(url, json=first, headers=bearer(app))
        stored = await stored_media(gw)
        other = {"imageBase64": data_url(png(65, 65)), "inputs": {"shuru": "two"}}
        refused = await gw.client.post(url, json=other, headers=bearer(app))
        stored_after_refusal = await stored_media(gw)
    assert taken.status_code == 200, taken.text
    assert_quota_refusal(refused, "dailyInvocations", 1)
    assert stored_after_refusal == stored == 1


async def test_an_output_over_the_media_quota_is_not_mirrored_and_the_task_succeeds(
    tmp_path: Path, sim_url: str
) -> None:
    async with gateway_app(tmp_path, sim_url) as gw:
        app = await gw.token(media_bytes=10)
        answer = await gw.invoke(app, UPSCALE)
        stored = await stored_media(gw)
        files = [p for p in (gw.state.settings.data_dir / "media").rglob("*") if p.is_file()]
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["images"][0]["ossUrl"] is None
    [warning] = body["metadata"]["warnings"]
    assert "not stored: Media quota of 10 bytes for this token is used up" in warning
    assert stored == 0
    assert files == []  # stored before the quota's refusal, then deleted
