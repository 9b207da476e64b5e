"""Durable tasks over real HTTP: async abilities, waits, external jobs, cancel, timeouts,
idempotency, the task list. The status model: queued → running → succeeded | failed |
timeout | canceled."""

from __future__ import annotations

import asyncio
import struct
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from ability_gateway.server.models import call_logs, jobs
from tests.server.conftest import LiveFactory

GEN = "ability_coze_image_gen_4step"
PATTERN = "ability_coze_pattern_extract"
PROMPT = "ability_coze_prompt_extract"
OUTPAINT = "ability_coze_outpaint"


def sample(sim_url: str) -> str:
    return f"{sim_url}/files/samples/square.png"


def gen_inputs(sim_url: str, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": {"url": sample(sim_url), "width": 640, "height": 320, "prompt": "一只猫", **extra}
    }


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_generation_answers_202_then_succeeds_by_notice(live: LiveFactory) -> None:
    async with live("--job-seconds", "0.5") as gw:
        response = await gw.invoke(GEN, gen_inputs(gw.sim_url))
        assert response.status_code == 202, response.text
        body = response.json()
        task_id = body["metadata"]["taskId"]
        assert body["status"] in ("queued", "running")
        assert body["metadata"]["state"] == body["status"]
        assert response.headers["location"] == f"/api/ability_tasks/{task_id}"
        assert response.headers["retry-after"] == "5"
        task, seen = await gw.wait(task_id)
        assert seen[-1] == "succeeded"
        assert set(seen) <= {"queued", "running", "succeeded"}
        result = task["resultPayload"]
        assert result["texts"] == ["图片生成完成"]
        assert len(result["images"]) == 4
        assert result["metadata"]["externalJobId"].startswith("job_")
        assert result["metadata"]["taskId"] == task_id
        assert result["metadata"]["state"] == "completed"
        image = result["images"][0]
        assert image["ossUrl"].startswith(f"{gw.url}/media/")
        async with httpx.AsyncClient() as plain:
            source = await plain.get(image["sourceUrl"])
            mirrored = await plain.get(image["ossUrl"])
        assert png_size(source.content) == (640, 320)
        assert mirrored.content == source.content  # our copy, byte for byte
        assert mirrored.headers["content-type"] == "image/png"
        assert task["errorPayload"] is None


async def test_generation_succeeds_by_polling_the_query_workflow(live: LiveFactory) -> None:
    async with live("--job-seconds", "0.5", notify=False) as gw:
        response = await gw.invoke(
            PATTERN, {"inputs": {"url": sample(gw.sim_url), "width": 64, "height": 64}}
        )
        assert response.status_code == 202
        task, _ = await gw.wait(response.json()["metadata"]["taskId"])
        assert task["status"] == "succeeded"
        assert task["resultPayload"]["texts"] == ["花纹提取完成"]
        async with gw.state.db.read() as conn:
            ops = (
                await conn.execute(
                    select(call_logs.c.operation, call_logs.c.workflow_id).where(
                        call_logs.c.task_id == task["id"]
                    )
                )
            ).all()
        assert ("workflow.run", "7597530887256801280") in ops
        assert ("workflow.run", "7598100000000000001") in ops  # the query workflow
        assert task["logId"] is not None


async def test_failed_generation_job_fails_the_task(live: LiveFactory) -> None:
    async with live("--job-seconds", "0.3", "--job-fail-rate", "1") as gw:
        response = await gw.invoke(GEN, gen_inputs(gw.sim_url))
        task, _ = await gw.wait(response.json()["metadata"]["taskId"])
        assert task["status"] == "failed"
        assert task["resultPayload"] is None
        error = task["errorPayload"]
        assert error["code"] == 502
        assert "generation failed" in error["message"]
        assert error["externalJobId"].startswith("job_")


async def test_generation_times_out_at_the_ability_deadline(
    live: LiveFactory, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        """
abilities:
  - id: quick_gen
    displayName: 限时生图
    capabilityKey: quick_gen
    workflowId: "7597701996124045312"
    mode: external_job
    imageField: url
    output: {kind: external_job}
    timeoutSeconds: 1
    externalJob: {notify: true}
    inputs:
      - {name: url, type: string, required: true}
      - {name: width, type: number, required: true}
      - {name: height, type: number, required: true}
      - {name: prompt, type: string, required: true}
""",
        encoding="utf-8",
    )
    async with live("--job-seconds", "30", catalog_file=catalog) as gw:
        response = await gw.invoke("quick_gen", gen_inputs(gw.sim_url))
        assert response.status_code == 202
        task, seen = await gw.wait(response.json()["metadata"]["taskId"])
        assert task["status"] == "timeout"
        assert "running" in seen
        assert task["errorPayload"]["code"] == 504


async def test_sync_ability_answers_202_after_the_wait_and_goes_on(live: LiveFactory) -> None:
    async with live("--latency-ms", "1500") as gw:
        response = await gw.invoke(
            PROMPT, {"inputs": {"url": sample(gw.sim_url)}}, Prefer="wait=0.3"
        )
        assert response.status_code == 202, response.text
        assert response.headers["preference-applied"] == "wait=0.3"
        body = response.json()
        assert body["status"] == "running"
        task, _ = await gw.wait(body["metadata"]["taskId"])
        assert task["status"] == "succeeded"
        assert task["resultPayload"]["texts"]


async def test_respond_async_forces_202_and_the_runner_finishes(live: LiveFactory) -> None:
    async with live() as gw:
        response = await gw.invoke(
            PROMPT, {"inputs": {"url": sample(gw.sim_url)}}, Prefer="respond-async"
        )
        assert response.status_code == 202
        assert response.headers["preference-applied"] == "respond-async"
        assert response.json()["status"] == "queued"
        task, _ = await gw.wait(response.json()["metadata"]["taskId"])
        assert task["status"] == "succeeded"


async def test_wait_longer_than_sixty_seconds_is_capped(live: LiveFactory) -> None:
    async with live() as gw:
        response = await gw.invoke(
            PROMPT, {"inputs": {"url": sample(gw.sim_url)}}, Prefer="wait=600"
        )
        assert response.status_code == 200
        assert response.headers["preference-applied"] == "wait=60"


async def test_cancel_a_queued_task(live: LiveFactory) -> None:
    async with live(runner_enabled=False) as gw:
        response = await gw.invoke(GEN, gen_inputs(gw.sim_url))
        task_id = response.json()["metadata"]["taskId"]
        canceled = await gw.client.post(f"/api/ability_tasks/{task_id}/cancel", headers=gw.headers)
        assert canceled.status_code == 200
        assert canceled.json()["status"] == "canceled"
        assert canceled.json()["errorPayload"]["message"] == "The task was canceled"
        async with gw.state.db.read() as conn:
            state = (
                await conn.execute(select(jobs.c.state).where(jobs.c.task_id == task_id))
            ).scalar_one()
        assert state == "canceled"


async def test_cancel_a_running_task_ignores_its_late_result(live: LiveFactory) -> None:
    async with live("--job-seconds", "1") as gw:
        response = await gw.invoke(GEN, gen_inputs(gw.sim_url))
        task_id = response.json()["metadata"]["taskId"]
        for _ in range(200):
            if (await gw.task(task_id))["status"] == "running":
                break
            await asyncio.sleep(0.02)
        canceled = await gw.client.post(f"/api/ability_tasks/{task_id}/cancel", headers=gw.headers)
        assert canceled.status_code == 200
        await asyncio.sleep(2.0)  # the job finishes and its notice arrives
        task = await gw.task(task_id)
        assert task["status"] == "canceled"
        assert task["resultPayload"] is None


async def test_cancel_of_finished_task_is_409(live: LiveFactory) -> None:
    async with live() as gw:
        done = (await gw.invoke(PROMPT, {"inputs": {"url": sample(gw.sim_url)}})).json()
        task_id = done["metadata"]["taskId"]
        response = await gw.client.post(f"/api/ability_tasks/{task_id}/cancel", headers=gw.headers)
        assert response.status_code == 409
        body = response.json()
        assert body["code"] == 409
        assert body["status"] == "succeeded"
        assert body["taskId"] == task_id
        missing = await gw.client.post("/api/ability_tasks/task_nope/cancel", headers=gw.headers)
        assert missing.status_code == 404
        assert missing.json()["code"] == 404


async def test_idempotency_key_returns_the_same_task(live: LiveFactory) -> None:
    async with live() as gw:
        payload = {"inputs": {"url": sample(gw.sim_url)}}
        first = await gw.invoke(PROMPT, payload, Idempotency_Key="order-1")
        second = await gw.invoke(PROMPT, payload, Idempotency_Key="order-1")
        assert first.status_code == second.status_code == 200
        assert second.json()["metadata"]["taskId"] == first.json()["metadata"]["taskId"]
        assert second.json()["texts"] == first.json()["texts"]
        assert "idempotent-replayed" not in first.headers
        assert second.headers["idempotent-replayed"] == "true"
        other = await gw.invoke(
            PROMPT, {"inputs": {"url": sample(gw.sim_url), "shuru": "x"}}, Idempotency_Key="order-1"
        )
        assert other.status_code == 409
        assert other.json()["code"] == 409
        assert other.json()["taskId"] == first.json()["metadata"]["taskId"]
        async with gw.state.db.read() as conn:
            runs = (await conn.execute(select(call_logs.c.id))).all()
        assert len(runs) == 1  # the retry ran nothing upstream


async def test_idempotent_retry_of_an_async_task_answers_its_current_state(
    live: LiveFactory,
) -> None:
    async with live("--job-seconds", "0.3") as gw:
        payload = gen_inputs(gw.sim_url)
        first = await gw.invoke(GEN, payload, Idempotency_Key="gen-1")
        task, _ = await gw.wait(first.json()["metadata"]["taskId"])
        again = await gw.invoke(GEN, payload, Idempotency_Key="gen-1")
        assert again.status_code == 200
        assert again.json()["status"] == "succeeded"
        assert again.json()["images"] == task["resultPayload"]["images"]


@pytest.mark.parametrize("key", ["", "x" * 256, "has space"])
async def test_bad_idempotency_key_is_400(live: LiveFactory, key: str) -> None:
    async with live() as gw:
        response = await gw.invoke(
            PROMPT, {"inputs": {"url": sample(gw.sim_url)}}, Idempotency_Key=key
        )
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_task_list_is_newest_first_with_cursor_and_filters(live: LiveFactory) -> None:
    async with live(runner_enabled=False) as gw:
        ids = []
        for _ in range(5):
            r = await gw.invoke(
                PROMPT, {"inputs": {"url": sample(gw.sim_url)}}, Prefer="respond-async"
            )
            ids.append(r.json()["metadata"]["taskId"])
        gen = await gw.invoke(GEN, gen_inputs(gw.sim_url))
        ids.append(gen.json()["metadata"]["taskId"])
        await gw.client.post(f"/api/ability_tasks/{ids[0]}/cancel", headers=gw.headers)

        page1 = (await gw.client.get("/api/ability_tasks?limit=4", headers=gw.headers)).json()
        assert [t["id"] for t in page1["items"]] == ids[::-1][:4]
        page2 = (
            await gw.client.get(
                f"/api/ability_tasks?limit=4&cursor={page1['nextCursor']}", headers=gw.headers
            )
        ).json()
        assert [t["id"] for t in page2["items"]] == ids[::-1][4:]
        assert page2["nextCursor"] is None

        by_ability = (
            await gw.client.get(f"/api/ability_tasks?abilityId={GEN}", headers=gw.headers)
        ).json()
        assert [t["id"] for t in by_ability["items"]] == [ids[5]]
        canceled = (
            await gw.client.get("/api/ability_tasks?status=canceled", headers=gw.headers)
        ).json()
        assert [t["id"] for t in canceled["items"]] == [ids[0]]

        bad = await gw.client.get("/api/ability_tasks?status=done", headers=gw.headers)
        assert bad.status_code == 400
        assert bad.json()["errors"][0]["field"] == "status"
        bad_limit = await gw.client.get("/api/ability_tasks?limit=0", headers=gw.headers)
        assert bad_limit.status_code == 400


async def test_task_list_shows_only_the_tokens_own_tasks(live: LiveFactory) -> None:
    from ability_gateway.server.auth.service import create_token

    async with live(runner_enabled=False) as gw:
        await gw.invoke(PROMPT, {"inputs": {"url": sample(gw.sim_url)}}, Prefer="respond-async")
        other = await create_token(gw.state.db, "other")
        listed = await gw.client.get(
            "/api/ability_tasks", headers={"Authorization": f"Bearer {other.token}"}
        )
        assert listed.json() == {"items": [], "nextCursor": None}


async def test_coze_async_runs_poll_the_run_history_through_throttling(
    live: LiveFactory,
) -> None:
    async with live("--throttle-every", "2", coze_allow_async=True) as gw:
        response = await gw.invoke(
            OUTPAINT,
            {
                "imageUrl": sample(gw.sim_url),
                "inputs": {
                    "expand_top": 8,
                    "expand_bottom": 8,
                    "expand_left": 0,
                    "expand_right": 0,
                },
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "succeeded"
        async with httpx.AsyncClient() as plain:
            png = await plain.get(body["images"][0]["sourceUrl"])
        assert png_size(png.content) == (512, 528)
        async with gw.state.db.read() as conn:
            rows = (
                await conn.execute(
                    select(call_logs.c.operation, call_logs.c.coze_code).where(
                        call_logs.c.task_id == body["metadata"]["taskId"]
                    )
                )
            ).all()
        operations = [r.operation for r in rows]
        assert operations[0] == "workflow.submit"
        assert "workflow.history" in operations
        assert body["logId"] is not None


async def test_notice_with_a_bad_signature_is_401(live: LiveFactory) -> None:
    async with live() as gw:
        response = await gw.client.post(
            "/api/provider_callbacks/coze/job_x",
            content=b'{"status":"succeeded"}',
            headers={
                "webhook-id": "msg_1",
                "webhook-timestamp": "1",
                "webhook-signature": "v1,AAAA",
            },
        )
        assert response.status_code == 401
        assert response.json()["code"] == 401
        unsigned = await gw.client.post("/api/provider_callbacks/coze/job_x", content=b"{}")
        assert unsigned.status_code == 401


async def test_notice_for_an_unknown_job_is_404_and_a_repeat_is_idempotent(
    live: LiveFactory,
) -> None:
    import datetime as dt
    import json

    from standardwebhooks import Webhook

    from tests.support import NOTICE_SECRET

    async with live("--job-seconds", "0.3") as gw:
        signer = Webhook(NOTICE_SECRET)

        def signed(body: str, msg_id: str) -> dict[str, str]:
            now = dt.datetime.now(dt.UTC)
            return {
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signer.sign(msg_id, now, body),
                "content-type": "application/json",
            }

        body = '{"externalId": "job_unknown", "status": "succeeded", "images": []}'
        unknown = await gw.client.post(
            "/api/provider_callbacks/coze/job_unknown", content=body, headers=signed(body, "msg_a")
        )
        assert unknown.status_code == 404
        assert unknown.json()["code"] == 404

        response = await gw.invoke(GEN, gen_inputs(gw.sim_url))
        task, _ = await gw.wait(response.json()["metadata"]["taskId"])
        external = task["resultPayload"]["metadata"]["externalJobId"]
        late = json.dumps({"externalId": external, "status": "failed", "error": "late and wrong"})
        repeat = await gw.client.post(
            f"/api/provider_callbacks/coze/{external}", content=late, headers=signed(late, "msg_b")
        )
        assert repeat.status_code == 200
        assert (await gw.task(task["id"]))["status"] == "succeeded"


async def test_notices_are_refused_when_not_configured(live: LiveFactory) -> None:
    async with live(notify=False) as gw:
        response = await gw.client.post("/api/provider_callbacks/coze/job_x", content=b"{}")
        assert response.status_code == 503
        assert response.json()["code"] == 503


async def test_an_idempotent_replay_of_a_generation_answers_202_at_once(live: LiveFactory) -> None:
    async with live("--job-seconds", "30") as gw:
        payload = gen_inputs(gw.sim_url)
        first = await gw.invoke(GEN, payload, Idempotency_Key="gen-2")
        again = await gw.invoke(GEN, payload, Idempotency_Key="gen-2")
        assert first.status_code == again.status_code == 202
        assert again.json()["metadata"]["taskId"] == first.json()["metadata"]["taskId"]
        other = await gw.invoke(GEN, gen_inputs(gw.sim_url, prompt="狗"), Idempotency_Key="gen-2")
        assert other.status_code == 409
        assert other.json()["status"] in ("queued", "running")


@pytest.mark.parametrize(
    ("prefer", "applied"),
    [
        ("wait=0.1;x=1", "wait=0.1"),
        ("handling=lenient", None),
        ("respond-async, wait=5", "respond-async"),
    ],
)
async def test_prefer_parameters_and_preference_applied(
    live: LiveFactory, prefer: str, applied: str | None
) -> None:
    async with live() as gw:
        response = await gw.invoke(PROMPT, {"inputs": {"url": sample(gw.sim_url)}}, Prefer=prefer)
        assert response.headers.get("preference-applied") == applied


# A NUL or another control character in the path is a 400 (tests/server/test_input_guard.py).
@pytest.mark.parametrize("task_id", ["x" * 300, "a%2Fb", "task_%E2%80%8B"])
async def test_odd_task_ids_are_404(live: LiveFactory, task_id: str) -> None:
    async with live() as gw:
        for method, path in [
            ("GET", f"/api/ability_tasks/{task_id}"),
            ("POST", f"/api/ability_tasks/{task_id}/cancel"),
            ("GET", f"/api/ability_tasks/{task_id}/callbacks"),
        ]:
            response = await gw.client.request(method, path, headers=gw.headers)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["code"] == 404
        bad_cursor = await gw.client.get("/api/ability_tasks?cursor=%00", headers=gw.headers)
        assert bad_cursor.status_code == 400


@pytest.mark.parametrize(
    ("notice", "field"),
    [
        ({}, "status"),
        ({"status": "running"}, "status"),
        ({"status": "succeeded", "texts": 5}, "texts"),
    ],
)
async def test_a_notice_that_is_not_final_or_malformed_is_400(
    live: LiveFactory, notice: dict[str, Any], field: str
) -> None:
    import datetime as dt
    import json

    from standardwebhooks import Webhook

    from tests.support import NOTICE_SECRET

    async with live() as gw:
        body = json.dumps({"externalId": "job_1", **notice})
        now = dt.datetime.now(dt.UTC)
        headers = {
            "webhook-id": "msg_x",
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(NOTICE_SECRET).sign("msg_x", now, body),
        }
        response = await gw.client.post(
            "/api/provider_callbacks/coze/job_1", content=body, headers=headers
        )
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == field
