"""The result cache: X-Cache, bypass, TTL, one upstream call for identical concurrent requests."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from ability_gateway.server.models import call_logs
from tests.server.conftest import Live, LiveFactory

PROMPT = "ability_coze_prompt_extract"


def image(gw: Live) -> str:
    return f"{gw.sim_url}/files/samples/square.png"


async def upstream_runs(gw: Live) -> list[str]:
    async with gw.state.db.read() as conn:
        rows = (await conn.execute(select(call_logs.c.operation))).all()
    return [r.operation for r in rows]


async def test_the_second_identical_invoke_is_a_hit_with_its_own_task(live: LiveFactory) -> None:
    async with live() as gw:
        payload = {"inputs": {"url": image(gw), "shuru": "水彩"}}
        first = await gw.invoke(PROMPT, {**payload, "metadata": {"n": 1}})
        second = await gw.invoke(PROMPT, {**payload, "metadata": {"n": 2}})
        assert first.headers["x-cache"] == "MISS"
        assert second.headers["x-cache"] == "HIT"
        one, two = first.json(), second.json()
        assert two["texts"] == one["texts"]
        assert two["metadata"]["taskId"] != one["metadata"]["taskId"]
        assert two["metadata"]["cached"] is True
        assert two["metadata"]["client"] == {"n": 2}
        assert two["logId"] != one["logId"]
        task = await gw.task(two["metadata"]["taskId"])
        assert task["status"] == "succeeded"
        assert await upstream_runs(gw) == ["workflow.run", "cache.hit"]


async def test_no_cache_bypasses_and_refreshes(live: LiveFactory) -> None:
    async with live() as gw:
        payload = {"inputs": {"url": image(gw)}}
        await gw.invoke(PROMPT, payload)
        fresh = await gw.invoke(PROMPT, payload, Cache_Control="no-cache")
        assert fresh.headers["x-cache"] == "MISS"
        assert await upstream_runs(gw) == ["workflow.run", "workflow.run"]


async def test_identical_concurrent_invokes_make_one_upstream_call(live: LiveFactory) -> None:
    async with live("--latency-ms", "600") as gw:
        payload = {"inputs": {"url": image(gw), "shuru": "并发"}}
        answers = await asyncio.gather(*(gw.invoke(PROMPT, payload) for _ in range(5)))
        assert [a.status_code for a in answers] == [200] * 5
        assert sorted(a.headers["x-cache"] for a in answers) == ["HIT"] * 4 + ["MISS"]
        assert len({a.json()["metadata"]["taskId"] for a in answers}) == 5
        assert (await upstream_runs(gw)).count("workflow.run") == 1


async def test_abilities_without_a_cache_say_nothing(live: LiveFactory) -> None:
    async with live() as gw:
        response = await gw.invoke(
            "ability_coze_upscale_8k", {"inputs": {"url": image(gw), "bianchang": 256}}
        )
        assert response.status_code == 200
        assert "x-cache" not in response.headers


async def test_an_expired_entry_is_a_miss(live: LiveFactory, tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        """
abilities:
  - id: short_cache
    displayName: 短缓存
    capabilityKey: short_cache
    workflowId: "7597535455856295936"
    imageField: url
    output: {kind: text}
    cache: {ttlSeconds: 0.3}
    inputs: [{name: url, type: string, required: true}]
""",
        encoding="utf-8",
    )
    async with live(catalog_file=catalog) as gw:
        payload = {"inputs": {"url": image(gw)}}
        assert (await gw.invoke("short_cache", payload)).headers["x-cache"] == "MISS"
        assert (await gw.invoke("short_cache", payload)).headers["x-cache"] == "HIT"
        await asyncio.sleep(0.5)
        assert (await gw.invoke("short_cache", payload)).headers["x-cache"] == "MISS"


async def test_a_new_idempotency_key_still_uses_the_cache(live: LiveFactory) -> None:
    # The SDK sends a fresh Idempotency-Key with every invoke: that must not defeat the cache.
    async with live() as gw:
        payload = {"inputs": {"url": image(gw), "shuru": "键"}}
        first = await gw.invoke(PROMPT, payload, Idempotency_Key="k-1")
        second = await gw.invoke(PROMPT, payload, Idempotency_Key="k-2")
        replay = await gw.invoke(PROMPT, payload, Idempotency_Key="k-2")
        assert first.headers["x-cache"] == "MISS"
        assert second.headers["x-cache"] == "HIT"
        assert replay.json()["metadata"]["taskId"] == second.json()["metadata"]["taskId"]
        assert (await upstream_runs(gw)).count("workflow.run") == 1


async def test_a_hit_for_another_token_carries_the_result_but_not_the_upstream_run(
    live: LiveFactory,
) -> None:
    from ability_gateway.server.auth.service import create_token

    async with live() as gw:
        other = await create_token(gw.state.db, "other")
        payload = {"inputs": {"url": image(gw), "shuru": "油画"}}
        first = (await gw.invoke(PROMPT, payload)).json()
        assert first["metadata"]["executeId"]
        assert first["metadata"]["debugUrl"]
        theirs = await gw.client.post(
            f"/api/abilities/{PROMPT}/invoke",
            json=payload,
            headers={"Authorization": f"Bearer {other.token}"},
        )
        mine = await gw.invoke(PROMPT, payload)
        assert theirs.headers["x-cache"] == mine.headers["x-cache"] == "HIT"
        foreign, own = theirs.json(), mine.json()
        assert foreign["texts"] == first["texts"]
        for key in ("executeId", "debugUrl", "usage", "executorId", "warnings"):
            assert key not in foreign["metadata"], key
        assert foreign["raw"] == {}
        assert first["metadata"]["executeId"] not in theirs.text
        # The token whose run made the result still sees that run's identifiers.
        assert own["metadata"]["executeId"] == first["metadata"]["executeId"]
        assert own["raw"] == first["raw"]
