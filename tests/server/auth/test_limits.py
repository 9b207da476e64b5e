"""Per-token limits: requests per minute (in memory, and on Redis across two nodes) and
unfinished tasks at once."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx

from ability_gateway.server.auth.service import create_token, set_token_limits
from tests.server.conftest import LiveFactory
from tests.support import cli, database_env, free_port, gateway_process, simulator_process


async def test_requests_over_the_per_minute_limit_are_429(live: LiveFactory) -> None:
    async with live() as gw:
        limited = await create_token(gw.state.db, "limited", rate_limit_per_minute=3)
        headers = {"Authorization": f"Bearer {limited.token}"}
        answers = [await gw.client.get("/api/abilities", headers=headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["x-ratelimit-limit"] == "3"
    assert answers[0].headers["x-ratelimit-remaining"] == "2"
    assert answers[2].headers["x-ratelimit-remaining"] == "0"
    refused = answers[3]
    assert refused.json()["code"] == 429
    assert refused.json()["message"] == "More than 3 requests a minute for this token"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-remaining"] == "0"


async def test_a_token_without_a_limit_is_not_counted(live: LiveFactory) -> None:
    async with live() as gw:
        response = await gw.client.get("/api/abilities", headers=gw.headers)
    assert response.status_code == 200
    assert "x-ratelimit-limit" not in response.headers


async def test_unfinished_tasks_are_capped_per_token(live: LiveFactory) -> None:
    async with live("--job-seconds", "30") as gw:
        capped = await create_token(gw.state.db, "capped", max_concurrent_tasks=1)
        headers = {"Authorization": f"Bearer {capped.token}"}
        inputs = {
            "url": f"{gw.sim_url}/files/samples/square.png",
            "width": 32,
            "height": 32,
            "prompt": "猫",
        }
        url = "/api/abilities/ability_coze_image_gen_4step/invoke"
        first = await gw.client.post(url, json={"inputs": inputs}, headers=headers)
        second = await gw.client.post(url, json={"inputs": inputs}, headers=headers)
        assert first.status_code == 202
        assert second.status_code == 429
        assert second.json()["message"] == "This token already has 1 unfinished tasks (at most 1)"
        assert second.headers["retry-after"] == "5"
        # Limits can be changed; nodes see it once their token cache (2 s) expires.
        assert await set_token_limits(gw.state.db, capped.id, {"max_concurrent_tasks": None})
        gw.state.token_cache.clear()
        third = await gw.client.post(url, json={"inputs": inputs}, headers=headers)
        assert third.status_code == 202


def test_the_limit_holds_across_two_nodes_sharing_redis(tmp_path: Path) -> None:
    with simulator_process() as sim:
        env = {
            "GATEWAY_DATA_DIR": str(tmp_path),
            "GATEWAY_COZE_BASE_URL": sim,
            "GATEWAY_COZE_API_TOKEN": "pat_simulator",
            "GATEWAY_REDIS_URL": "redis://127.0.0.1:6379/0",
            **database_env(),
        }
        created = json.loads(
            cli(
                "token",
                "create",
                "--name",
                f"r-{uuid.uuid4().hex[:6]}",
                "--rate-limit",
                "5",
                "--json",
                env=env,
            ).stdout
        )
        headers = {"Authorization": f"Bearer {created['token']}"}
        with (
            gateway_process(env, tmp_path, free_port()) as a,
            gateway_process(env, tmp_path, free_port()) as b,
        ):
            codes = [
                httpx.get(f"{url}/api/abilities", headers=headers).status_code for url in [a, b] * 5
            ]
    assert sorted(codes) == [200] * 5 + [429] * 5


def test_token_limits_command(tmp_path: Path) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path), **database_env()}
    created = json.loads(
        cli("token", "create", "--name", "x", "--max-concurrent", "2", "--json", env=env).stdout
    )
    assert created["maxConcurrentTasks"] == 2
    changed = cli(
        "token", "limits", created["id"], "--rate-limit", "100", "--max-concurrent", "0", env=env
    )
    assert changed.returncode == 0, changed.stderr
    [row] = json.loads(cli("token", "list", "--json", env=env).stdout)
    assert row["rate_limit_per_minute"] == 100
    assert row["max_concurrent_tasks"] is None
    missing = cli("token", "limits", "tok_nope", "--rate-limit", "1", env=env)
    assert missing.returncode == 1
