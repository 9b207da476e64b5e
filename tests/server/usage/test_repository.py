"""Rollups move as tasks end (real invokes through the in-process gateway): by outcome, cache
hits, durations in their bucket, Coze's token usage; and the quota counter's refusal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ability_gateway.server.models import usage_rollups
from ability_gateway.server.models.usage_rollup import BUCKET_COLUMNS
from ability_gateway.server.usage import repository
from ability_gateway.server.usage.quotas import day_window
from ability_gateway.server.usage.repository import HOUR_MS, bucket_of, increments
from tests.server.usage.conftest import PROMPT, Gateway, bearer, gateway_app
from tests.support import simulator_process


async def rollup_rows(gw: Gateway) -> list[dict[str, Any]]:
    async with gw.state.db.read() as conn:
        rows = (await conn.execute(select(usage_rollups))).mappings().all()
    return [dict(row) for row in rows]


async def test_a_succeeded_invoke_adds_a_call_its_duration_and_cozes_usage(
    tmp_path: Path, sim_url: str
) -> None:
    async with gateway_app(tmp_path, sim_url) as gw:
        app = await gw.token()
        answer = await gw.invoke(app, wish="one")
        assert answer.status_code == 200, answer.text
        [row] = await rollup_rows(gw)
        usage = answer.json()["metadata"]["usage"]
    assert (row["token_id"], row["ability_id"]) == (app.id, PROMPT)
    assert row["hour_start_ms"] % HOUR_MS == 0
    assert (row["calls"], row["succeeded"], row["failed"], row["cache_hits"]) == (1, 1, 0, 0)
    assert sum(row[c] for c in BUCKET_COLUMNS) == 1
    assert row[bucket_of(row["duration_sum_ms"])] == 1
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (
        usage["input_count"],
        usage["output_count"],
        usage["token_count"],
    )
    assert row["total_tokens"] > 0


async def test_with_rollups_off_an_invoke_adds_nothing(tmp_path: Path, sim_url: str) -> None:
    async with gateway_app(tmp_path, sim_url, usage_rollups=False) as gw:
        app = await gw.token()
        answer = await gw.invoke(app, wish="one")
        assert answer.status_code == 200, answer.text
        assert await rollup_rows(gw) == []


async def test_a_cache_hit_counts_as_a_call_and_a_hit_but_not_its_coze_tokens(
    tmp_path: Path, sim_url: str
) -> None:
    async with gateway_app(tmp_path, sim_url) as gw:
        app = await gw.token()
        first = await gw.invoke(app, wish="same")
        second = await gw.invoke(app, wish="same")
        assert second.headers["x-cache"] == "HIT"
        [row] = await rollup_rows(gw)
    assert (row["calls"], row["succeeded"], row["cache_hits"]) == (2, 2, 1)
    assert row["total_tokens"] == first.json()["metadata"]["usage"]["token_count"]


async def test_a_failed_invoke_counts_as_failed(tmp_path: Path) -> None:
    with simulator_process("--fail-rate", "1") as failing:
        async with gateway_app(tmp_path, failing, coze_max_retries=0) as gw:
            app = await gw.token()
            answer = await gw.invoke(app)
            assert answer.status_code == 502
            [row] = await rollup_rows(gw)
    assert (row["calls"], row["succeeded"], row["failed"], row["total_tokens"]) == (1, 0, 1, 0)


async def test_a_canceled_task_counts_as_canceled(tmp_path: Path) -> None:
    with simulator_process("--latency-ms", "3000") as slow:
        async with gateway_app(tmp_path, slow) as gw:
            app = await gw.token()
            accepted = await gw.invoke(app, Prefer="respond-async")
            assert accepted.status_code == 202, accepted.text
            task_id = accepted.json()["metadata"]["taskId"]
            canceled = await gw.client.post(
                f"/api/ability_tasks/{task_id}/cancel", headers=bearer(app)
            )
            assert canceled.status_code == 200, canceled.text
            [row] = await rollup_rows(gw)
    assert (row["calls"], row["canceled"], row["succeeded"]) == (1, 1, 0)


def test_increments_put_a_duration_in_one_bucket_and_tolerate_odd_usage() -> None:
    payload = {"metadata": {"usage": {"input_count": 7, "output_count": "x", "token_count": 9.0}}}
    values = increments("timeout", 100, payload, cache_hit=False)
    assert (values["calls"], values["timeout"], values["ms_le_100"]) == (1, 1, 1)
    assert sum(values[c] for c in BUCKET_COLUMNS) == 1
    assert (values["input_tokens"], values["output_tokens"], values["total_tokens"]) == (7, 0, 9)
    assert bucket_of(0) == "ms_le_50"
    assert bucket_of(101) == "ms_le_250"
    assert bucket_of(10**9) == "ms_over_120000"
    untimed = increments("canceled", None, None, cache_hit=False)
    assert sum(untimed[c] for c in BUCKET_COLUMNS) == 0


async def test_the_quota_counter_refuses_at_its_cap(tmp_path: Path, sim_url: str) -> None:
    async with gateway_app(tmp_path, sim_url) as gw:
        app = await gw.token()
        # Today's window: retention forgets the counters of windows that are over.
        today = day_window(int(time.time() * 1000), "UTC").start_ms

        def take(conn: Any) -> bool:
            return repository.take_quota(conn, app.id, "*", today, 2)

        taken = [await gw.state.db.run_write(take) for _ in range(4)]
        async with gw.state.db.read() as conn:
            used = await repository.used_in_window(conn, [app.id], today)
    assert taken == [True, True, False, False]
    assert used == {(app.id, "*"): 2}
