"""The scrape: database-wide job gauges from one query, and several processes' metrics summed
through one ``PROMETHEUS_MULTIPROC_DIR`` without counting the job gauges once per process."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from ability_gateway.server.runner.queue import enqueue
from tests.conftest import make_settings
from tests.server.metrics.support import PROMPT, Scrape, bearer, gateway
from tests.support import cli, database_env, gateway_process, simulator_process

HOUR_MS = 3_600_000


async def test_the_job_gauges_count_queued_due_and_the_oldest_due_job(
    tmp_path: Path, sim_url: str, sample_image: str
) -> None:
    async with gateway(make_settings(tmp_path, sim_url, runner_enabled=False)) as gw:
        for _ in range(3):  # queued, due now: nobody runs them
            response = await gw.invoke(
                PROMPT, {"inputs": {"url": sample_image}}, Prefer="respond-async"
            )
            assert response.status_code == 202, response.text
        await gw.state.db.run_write(lambda c: enqueue(c, "test.later", delay_ms=HOUR_MS))
        await gw.state.db.run_write(lambda c: enqueue(c, "test.late", delay_ms=-60_000))
        found = await gw.scrape()
    assert found.value("gateway_jobs_queued", kind="task.run") == 3
    assert found.value("gateway_jobs_due", kind="task.run") == 3
    assert found.value("gateway_jobs_running", kind="task.run") == 0
    assert found.value("gateway_jobs_queued", kind="test.later") == 1
    assert found.value("gateway_jobs_due", kind="test.later") == 0
    assert found.value("gateway_jobs_oldest_due_age_seconds", kind="test.later") == 0
    assert 59 <= found.value("gateway_jobs_oldest_due_age_seconds", kind="test.late") < 120
    # A known kind with no job is there at 0, so its series does not vanish.
    assert found.has("gateway_jobs_queued", kind="callback.deliver")
    assert found.value("gateway_jobs_queued", kind="callback.deliver") == 0


async def test_a_step_in_flight_counts_as_running(tmp_path: Path, sample_image: str) -> None:
    with simulator_process("--latency-ms", "1500") as slow:
        async with gateway(make_settings(tmp_path, slow, runner_enabled=False)) as gw:
            # A sync invoke's job is born leased to the request, which runs the first step.
            response = await gw.invoke(PROMPT, {"inputs": {"url": sample_image}}, Prefer="wait=0")
            assert response.status_code == 202, response.text
            found = await gw.scrape()
    assert found.value("gateway_jobs_running", kind="task.run") == 1
    assert found.value("gateway_jobs_queued", kind="task.run") == 0


def _gateway_env(tmp_path: Path, sim_url: str, multiproc: Path) -> dict[str, str]:
    return {
        "GATEWAY_DATA_DIR": str(tmp_path / "data"),
        "GATEWAY_COZE_BASE_URL": sim_url,
        "GATEWAY_COZE_API_TOKEN": "pat_simulator",
        "GATEWAY_EGRESS_ALLOW": "127.0.0.0/8",
        "GATEWAY_RUNNER_ENABLED": "false",  # the jobs stay queued: the gauge has a known value
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        **database_env(),
    }


def test_two_processes_are_summed_and_the_job_gauges_are_not_doubled(
    tmp_path: Path, sim_url: str, sample_image: str
) -> None:
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    env = _gateway_env(tmp_path, sim_url, multiproc)
    created = cli("token", "create", "--name", "ops", "--admin", "--json", env=env)
    assert created.returncode == 0, created.stderr
    token = bearer(json.loads(created.stdout)["token"])
    body = {"inputs": {"url": sample_image}}
    async_invoke = {**token, "Prefer": "respond-async"}
    path = f"/api/abilities/{PROMPT}/invoke"
    with gateway_process(env, tmp_path) as first, gateway_process(env, tmp_path) as second:
        for url, times in ((first, 1), (second, 2)):
            for _ in range(times):
                response = httpx.post(url + path, json=body, headers=async_invoke, timeout=30)
                assert response.status_code == 202, response.text
        scrapes = [
            Scrape.parse(httpx.get(url + "/metrics", headers=token, timeout=30).text)
            for url in (first, second)
        ]
    accepted = {"ability": PROMPT, "mode": "async", "outcome": "accepted"}
    for found in scrapes:  # either process answers for both
        assert found.value("gateway_invocations_total", **accepted) == 3
        assert (
            found.value("gateway_invoke_duration_seconds_count", ability=PROMPT, mode="async") == 3
        )
        # Read once from the shared database, not once per process's files.
        assert found.value("gateway_jobs_queued", kind="task.run") == 3
        # A live-max gauge: each executor state once, not summed over the two processes.
        assert (
            found.value("gateway_executor_circuit_state", executor="default", state="closed") == 1
        )
    assert len(list(multiproc.glob("counter_*.db"))) == 2  # one file per process
