"""What each part records, seen through a real scrape after real requests (the simulator
behind the gateway). Metrics are per process, so each test compares two scrapes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from ability_gateway.server.auth.service import create_token
from ability_gateway.server.errors import BadRequest, Conflict, ServiceUnavailable, UpstreamError
from ability_gateway.server.metrics.registry import outcome_of
from tests.conftest import make_settings
from tests.server.metrics.support import OUTPAINT, PROMPT, Gateway, Scrape, gateway
from tests.support import Receiver, free_port, simulator_process

INVOKED = "gateway_invocations_total"
LATENCY = "gateway_invoke_duration_seconds_count"
COZE = "gateway_coze_requests_total"
TOKEN = "gateway_token_invocations_total"
COZE_LATENCY = "gateway_coze_request_duration_seconds_count"


async def _until(gw: Gateway, before: Scrape, name: str, **labels: str) -> Scrape:
    """Scrape until ``name{labels}`` moved (a job step counts after the request returned)."""
    for _ in range(200):
        now = await gw.scrape()
        if now.moved(before, name, **labels):
            return now
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name}{labels} did not move")


async def test_a_sync_invoke_counts_its_outcome_latency_and_coze_call(
    tmp_path: Path, sim_url: str, sample_image: str
) -> None:
    async with gateway(make_settings(tmp_path, sim_url)) as gw:
        before = await gw.scrape()
        response = await gw.invoke(PROMPT, {"inputs": {"url": sample_image, "shuru": "a"}})
        assert response.status_code == 200, response.text
        after = await gw.scrape()
    sync = {"ability": PROMPT, "mode": "sync"}
    assert after.moved(before, INVOKED, **sync, outcome="succeeded") == 1
    assert after.moved(before, LATENCY, **sync) == 1
    assert after.moved(before, "gateway_invoke_duration_seconds_sum", **sync) > 0
    run = {"executor": "default", "operation": "workflow.run"}
    assert after.moved(before, COZE, **run, outcome="succeeded", code="0") == 1
    assert after.moved(before, COZE_LATENCY, **run) == 1


async def test_the_same_invoke_again_is_a_cache_hit(
    tmp_path: Path, sim_url: str, sample_image: str
) -> None:
    body = {"inputs": {"url": sample_image, "shuru": "cached"}}
    async with gateway(make_settings(tmp_path, sim_url)) as gw:
        before = await gw.scrape()
        first = await gw.invoke(PROMPT, body)
        second = await gw.invoke(PROMPT, body)
        after = await gw.scrape()
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    lookups = "gateway_result_cache_lookups_total"
    assert after.moved(before, lookups, ability=PROMPT, result="miss") == 1
    assert after.moved(before, lookups, ability=PROMPT, result="hit") == 1
    assert after.moved(before, INVOKED, ability=PROMPT, mode="sync", outcome="succeeded") == 2
    run = {"executor": "default", "operation": "workflow.run"}
    assert after.moved(before, COZE, **run, outcome="succeeded", code="0") == 1  # not the hit


async def test_an_async_invoke_counts_as_accepted_in_async_mode(
    tmp_path: Path, sim_url: str, sample_image: str
) -> None:
    async with gateway(make_settings(tmp_path, sim_url, runner_enabled=False)) as gw:
        before = await gw.scrape()
        response = await gw.invoke(
            PROMPT, {"inputs": {"url": sample_image}}, Prefer="respond-async"
        )
        assert response.status_code == 202, response.text
        after = await gw.scrape()
    assert after.moved(before, INVOKED, ability=PROMPT, mode="async", outcome="accepted") == 1
    assert after.moved(before, LATENCY, ability=PROMPT, mode="async") == 1
    assert after.moved(before, INVOKED, ability=PROMPT, mode="sync", outcome="accepted") == 0


async def test_a_failed_workflow_counts_as_failed_with_cozes_code(
    tmp_path: Path, sample_image: str
) -> None:
    with simulator_process("--fail-rate", "1") as failing:
        settings = make_settings(tmp_path, failing, coze_max_retries=0)
        async with gateway(settings) as gw:
            before = await gw.scrape()
            response = await gw.invoke(PROMPT, {"inputs": {"url": sample_image}})
            assert response.status_code == 502, response.text
            after = await gw.scrape()
    assert after.moved(before, INVOKED, ability=PROMPT, mode="sync", outcome="failed") == 1
    assert after.moved(before, LATENCY, ability=PROMPT, mode="sync") == 1
    coze = {"executor": "default", "operation": "workflow.run", "outcome": "workflow_error"}
    assert after.moved(before, COZE, **coze, code=str(response.json()["code"])) == 1


async def test_rejections_are_counted_but_not_timed(tmp_path: Path, sim_url: str) -> None:
    async with gateway(make_settings(tmp_path, sim_url)) as gw:
        before = await gw.scrape()
        bad = await gw.invoke(PROMPT, {"inputs": {}})
        unknown = await gw.invoke("ability_that_does_not_exist", {"inputs": {}})
        after = await gw.scrape()
    assert (bad.status_code, unknown.status_code) == (400, 404)
    assert after.moved(before, INVOKED, ability=PROMPT, mode="sync", outcome="rejected") == 1
    assert after.moved(before, LATENCY, ability=PROMPT, mode="sync") == 0
    # An id outside the catalog never becomes a label of its own.
    assert after.moved(before, INVOKED, ability="unknown", mode="sync", outcome="rejected") == 1
    assert not any(
        ("ability", "ability_that_does_not_exist") in labels for _, labels in after.samples
    )


async def test_token_labels_count_each_tokens_outcomes_only_when_asked(
    tmp_path: Path, sim_url: str, sample_image: str
) -> None:
    body = {"inputs": {"url": sample_image, "shuru": "by token"}}
    async with gateway(make_settings(tmp_path, sim_url, metrics_token_labels=True)) as gw:
        mine = await create_token(gw.state.db, "mine")
        before = await gw.scrape()
        ok = await gw.invoke(PROMPT, body, Authorization=f"Bearer {mine.token}")
        bad = await gw.invoke(PROMPT, {"inputs": {}}, Authorization=f"Bearer {mine.token}")
        after = await gw.scrape()
    assert (ok.status_code, bad.status_code) == (200, 400)
    assert after.moved(before, TOKEN, token=mine.id, outcome="succeeded") == 1
    assert after.moved(before, TOKEN, token=mine.id, outcome="rejected") == 1
    async with gateway(make_settings(tmp_path / "off", sim_url)) as gw:  # the default
        before = await gw.scrape()
        assert (await gw.invoke(PROMPT, body)).status_code == 200
        after = await gw.scrape()
    by_token = {k: v for k, v in after.samples.items() if k[0] == TOKEN}
    assert by_token == {k: v for k, v in before.samples.items() if k[0] == TOKEN}


async def test_a_rate_limited_request_counts_as_refused(
    tmp_path: Path, sim_url: str, sample_image: str
) -> None:
    async with gateway(make_settings(tmp_path, sim_url), rate_limit_per_minute=1) as gw:
        before = await gw.scrape()
        await gw.invoke(PROMPT, {"inputs": {"url": sample_image}})
        limited = await gw.invoke(PROMPT, {"inputs": {"url": sample_image}})
        after = await gw.scrape()
    assert limited.status_code == 429
    refused = "gateway_requests_refused_total"
    assert after.moved(before, refused, reason="rate_limit") == 1
    assert after.moved(before, refused, reason="concurrency") == 0
    assert after.has(refused, reason="quota")  # every reason is there from the start


async def test_a_token_at_its_task_cap_counts_as_refused_for_concurrency(
    tmp_path: Path, sim_url: str, sample_image: str
) -> None:
    settings = make_settings(tmp_path, sim_url, runner_enabled=False)  # the first stays queued
    async with gateway(settings, max_concurrent_tasks=1) as gw:
        before = await gw.scrape()
        body: dict[str, Any] = {"inputs": {"url": sample_image}}
        first = await gw.invoke(PROMPT, body, Prefer="respond-async")
        second = await gw.invoke(PROMPT, body, Prefer="respond-async")
        after = await gw.scrape()
    assert (first.status_code, second.status_code) == (202, 429)
    assert after.moved(before, "gateway_requests_refused_total", reason="concurrency") == 1
    assert after.moved(before, INVOKED, ability=PROMPT, mode="async", outcome="rejected") == 1


async def test_an_unreachable_executor_counts_no_code_and_opens_its_circuit(
    tmp_path: Path, sample_image: str
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(tmp_path, nowhere, coze_max_retries=0, breaker_threshold=1)
    async with gateway(settings) as gw:
        before = await gw.scrape()
        assert before.value("gateway_executor_circuit_state", executor="default", state="closed")
        response = await gw.invoke(PROMPT, {"inputs": {"url": sample_image}})
        assert response.status_code == 502, response.text
        after = await gw.scrape()
    coze = {"executor": "default", "operation": "workflow.run", "outcome": "transport_error"}
    assert after.moved(before, COZE, **coze, code="none") == 1
    circuit = "gateway_executor_circuit_state"
    assert after.value(circuit, executor="default", state="open") == 1
    assert after.value(circuit, executor="default", state="closed") == 0


async def test_a_delivered_callback_counts_its_first_attempt(
    tmp_path: Path, sim_url: str, sample_image: str
) -> None:
    with Receiver() as receiver:
        async with gateway(make_settings(tmp_path, sim_url, runner_poll_seconds=0.05)) as gw:
            before = await gw.scrape()
            body = {"inputs": {"url": sample_image}, "callbackUrl": receiver.url}
            assert (await gw.invoke(PROMPT, body)).status_code == 200
            await receiver.wait(1)
            attempts = "gateway_callback_attempts_total"
            after = await _until(gw, before, attempts, outcome="delivered", attempt="1")
    assert after.moved(before, attempts, outcome="delivered", attempt="1") == 1
    assert after.moved(before, attempts, outcome="retrying", attempt="1") == 0


async def test_a_mirrored_output_counts_its_bytes(
    tmp_path: Path, sim_url: str, sample_image: str
) -> None:
    async with gateway(make_settings(tmp_path, sim_url)) as gw:
        before = await gw.scrape()
        inputs = {"expand_top": 1, "expand_bottom": 2, "expand_left": 3, "expand_right": 4}
        response = await gw.invoke(
            OUTPAINT, {"imageUrl": sample_image, "inputs": {**inputs, "moxing": "2"}}
        )
        assert response.status_code == 200, response.text
        stored = response.json()["images"][0]["ossUrl"]
        size = len((await gw.client.get(stored.split("8080", 1)[1])).content)
        after = await gw.scrape()
    media = "gateway_media_stored_bytes_total"
    assert after.moved(before, media, kind="image", source="output") == size > 0


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (UpstreamError("x", extra={"status": "failed"}), "failed"),
        (Conflict("x", extra={"status": "canceled"}), "canceled"),
        (Conflict("Idempotency-Key reused"), "rejected"),
        (BadRequest("x"), "rejected"),
        (ServiceUnavailable("x"), "error"),
        (RuntimeError("a bug"), "error"),
    ],
)
def test_an_error_body_maps_to_its_outcome(error: Exception, outcome: str) -> None:
    assert outcome_of(error) == outcome
