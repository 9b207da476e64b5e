"""The admin API across tokens: tasks with their story, call logs by ``logId`` (the guide's
§8.4 path), the callback dead-letter and its redelivery, executors' recent outcomes.
Every route refuses an app token (403) and shows nothing of another token's to it."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import create_token
from ability_gateway.server.state import GatewayState
from tests.conftest import make_settings
from tests.server.conftest import LiveFactory
from tests.support import Receiver, simulator_process

PROMPT = "ability_coze_prompt_extract"
UPSCALE = "ability_coze_upscale_8k"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def admin(gateway: GatewayState) -> dict[str, str]:
    return bearer((await create_token(gateway.db, "root", admin=True)).token)


async def test_the_guides_path_an_app_gets_a_log_id_and_an_admin_looks_it_up(
    tmp_path: Path, sample_image: str
) -> None:
    # §8.4: "contact the admin with your logId" — the admin finds Coze's code, logid, debug_url.
    with simulator_process("--fail-rate", "1") as failing:
        app = create_app(make_settings(tmp_path, failing, coze_max_retries=1))
        async with app.router.lifespan_context(app):
            state: GatewayState = app.state.gateway
            user = await create_token(state.db, "app")
            root = await create_token(state.db, "root", admin=True)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
                failed = await c.post(
                    f"/api/abilities/{PROMPT}/invoke",
                    json={"inputs": {"url": sample_image}},
                    headers=bearer(user.token),
                )
                body = failed.json()
                log_id = body["logId"]
                refused = await c.get(f"/api/admin/call_logs/{log_id}", headers=bearer(user.token))
                found = await c.get(f"/api/admin/call_logs/{log_id}", headers=bearer(root.token))
                story = await c.get(
                    f"/api/admin/tasks/{body['taskId']}", headers=bearer(root.token)
                )
    assert failed.status_code == 502
    assert refused.status_code == 403
    assert found.status_code == 200
    log = found.json()
    assert (log["logId"], log["taskId"], log["tokenId"]) == (log_id, body["taskId"], user.id)
    assert log["cozeCode"] == 720701013
    assert log["cozeLogId"]  # Coze's own logid, for Coze's support
    assert log["debugUrl"] == body["debugUrl"]
    assert log["operation"] == "workflow.run"
    assert log["requestBody"]["workflow_id"]
    assert log["attempt"] == 2  # the last of two tries (one retry)
    calls = story.json()["callLogs"]
    assert [c["attempt"] for c in calls] == [1, 2]
    assert calls[-1]["logId"] == log_id


async def test_a_tasks_story_holds_its_calls_media_and_callback(live: LiveFactory) -> None:
    with Receiver() as receiver:
        async with live(egress_allow="127.0.0.0/8") as gw:
            root = await create_token(gw.state.db, "root", admin=True)
            image = await gw.client.get(f"{gw.sim_url}/files/samples/square.png")
            data_url = "data:image/png;base64," + base64.b64encode(image.content).decode()
            response = await gw.invoke(
                UPSCALE,
                {
                    "inputs": {"bianchang": 64},
                    "imageBase64": data_url,
                    "callbackUrl": receiver.url,
                    "callbackHeaders": {"X-Receiver-Secret": "s3cr3t-value"},
                },
                Prefer="respond-async",
            )
            task_id = response.json()["metadata"]["taskId"]
            await gw.wait(task_id)
            await receiver.wait(1)
            for _ in range(100):  # the delivery's state is written just after the attempt
                story = (
                    await gw.client.get(f"/api/admin/tasks/{task_id}", headers=bearer(root.token))
                ).json()
                if story["callback"]["delivery"]["state"] == "delivered":
                    break
                await asyncio.sleep(0.05)
    task = story["task"]
    assert task["status"] == "succeeded"
    assert task["callbackHeaderNames"] == ["X-Receiver-Secret"]
    assert "s3cr3t-value" not in str(story)  # header values are never shown
    assert [c["operation"] for c in story["callLogs"]][-1] in ("workflow.run", "workflow.history")
    roles = sorted(m["role"] for m in story["media"])
    assert roles.count("input") == 1  # the uploaded image
    assert roles.count("output") >= 1  # the mirrored result
    assert all(m["url"].startswith("/media/") and m["size"] > 0 for m in story["media"])
    assert story["callback"]["delivery"]["state"] == "delivered"
    assert story["callback"]["attempts"][0]["httpStatus"] == 200


async def test_the_task_list_filters_across_tokens(
    client: httpx.AsyncClient, gateway: GatewayState, admin: dict[str, str], sample_image: str
) -> None:
    first = await create_token(gateway.db, "first")
    second = await create_token(gateway.db, "second")
    ids: dict[str, list[str]] = {first.id: [], second.id: []}
    for token in (first, second, first):
        response = await client.post(
            f"/api/abilities/{PROMPT}/invoke",
            json={"inputs": {"url": f"{sample_image}?{len(ids[token.id])}{token.id}"}},
            headers={**bearer(token.token), "X-Request-ID": f"req-{token.id}-{len(ids[token.id])}"},
        )
        ids[token.id].append(response.json()["metadata"]["taskId"])

    async def listed(**params: Any) -> list[str]:
        page = await client.get("/api/admin/tasks", params=params, headers=admin)
        assert page.status_code == 200, page.text
        return [item["id"] for item in page.json()["items"]]

    assert set(await listed()) >= {*ids[first.id], *ids[second.id]}
    assert await listed(tokenId=first.id) == ids[first.id][::-1]  # newest first
    assert await listed(tokenId=second.id, status="succeeded") == ids[second.id]
    assert await listed(status="failed") == []
    assert await listed(q=ids[second.id][0]) == ids[second.id]
    assert await listed(q=f"req-{first.id}-1") == [ids[first.id][1]]
    assert await listed(abilityId="ability_nope") == []
    assert await listed(**{"from": "2000-01-01T00:00:00Z", "to": "2001-01-01T00:00:00Z"}) == []
    page = (await client.get("/api/admin/tasks", params={"limit": 1}, headers=admin)).json()
    rest = await listed(cursor=page["nextCursor"])
    assert page["items"][0]["id"] not in rest
    assert len(rest) >= 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "yesterday"}, "from"),
        ({"from": "2026-12-01T00:00:00"}, "from"),  # no time zone
        ({"from": "2026-12-02T00:00:00Z", "to": "2026-12-01T00:00:00Z"}, "to"),
        ({"status": "lost"}, "status"),
        ({"limit": 0}, "limit"),
        ({"limit": 1000}, "limit"),
    ],
)
async def test_bad_task_filters_are_a_400_naming_the_field(
    client: httpx.AsyncClient, admin: dict[str, str], params: dict[str, Any], field: str
) -> None:
    response = await client.get("/api/admin/tasks", params=params, headers=admin)
    assert response.status_code == 400
    assert field in [e["field"] for e in response.json()["errors"]]


async def test_call_logs_list_and_lookups(
    client: httpx.AsyncClient, auth: dict[str, str], admin: dict[str, str], sample_image: str
) -> None:
    response = await client.post(
        f"/api/abilities/{PROMPT}/invoke", json={"inputs": {"url": sample_image}}, headers=auth
    )
    task_id = response.json()["metadata"]["taskId"]
    log_id = (await client.get(f"/api/ability_tasks/{task_id}", headers=auth)).json()["logId"]
    page = (await client.get("/api/admin/call_logs", headers=admin)).json()
    assert log_id in [item["logId"] for item in page["items"]]
    assert (
        await client.get("/api/admin/call_logs", params={"failed": True}, headers=admin)
    ).json()["items"] == []
    one = (await client.get(f"/api/admin/call_logs/{log_id}", headers=admin)).json()
    assert one["cozeCode"] == 0
    missing = await client.get("/api/admin/call_logs/999999", headers=admin)
    assert missing.status_code == 404
    for bad in ("abc", "0", "-1"):
        assert (await client.get(f"/api/admin/call_logs/{bad}", headers=admin)).status_code == 400
    bad_cursor = await client.get("/api/admin/call_logs", params={"cursor": "x"}, headers=admin)
    assert bad_cursor.status_code == 400


async def test_the_dead_letter_lists_gave_up_deliveries_and_redelivers_them(
    live: LiveFactory,
) -> None:
    receiver = Receiver(default=(500, {"error": "down"}, 0.0))
    with receiver:
        async with live(egress_allow="127.0.0.0/8", callback_retry_schedule="0.05") as gw:
            root = bearer((await create_token(gw.state.db, "root", admin=True)).token)
            image = f"{gw.sim_url}/files/samples/square.png"
            task_ids = []
            for n in range(2):
                response = await gw.invoke(
                    PROMPT, {"inputs": {"url": f"{image}?{n}"}, "callbackUrl": receiver.url}
                )
                task_ids.append(response.json()["metadata"]["taskId"])
            await receiver.wait(4)  # two attempts each, then exhausted
            for _ in range(200):
                dead = (await gw.client.get("/api/admin/callbacks", headers=root)).json()
                if len(dead["items"]) == 2:
                    break
                await asyncio.sleep(0.05)
            assert sorted(item["taskId"] for item in dead["items"]) == sorted(task_ids)
            assert {item["state"] for item in dead["items"]} == {"exhausted"}
            receiver.default = (200, {"code": 0}, 0.0)  # the receiver is back
            report = await gw.client.post(
                "/api/admin/callbacks/redeliver", json={"state": "exhausted"}, headers=root
            )
            assert report.status_code == 200, report.text
            outcomes = {item["taskId"]: item for item in report.json()["items"]}
            after = (await gw.client.get("/api/admin/callbacks", headers=root)).json()
            delivered = (
                await gw.client.get(
                    "/api/admin/callbacks", params={"state": "delivered"}, headers=root
                )
            ).json()
            same_ids = {r["headers"]["webhook-id"] for r in receiver.requests}  # type: ignore[index]
            bad = await gw.client.post("/api/admin/callbacks/redeliver", json={}, headers=root)
            both = await gw.client.post(
                "/api/admin/callbacks/redeliver",
                json={"state": "gone", "taskIds": task_ids},
                headers=root,
            )
            unknown = await gw.client.post(
                "/api/admin/callbacks/redeliver", json={"taskIds": ["task_nope"]}, headers=root
            )
    assert sorted(outcomes) == sorted(task_ids)
    assert {o["outcome"] for o in outcomes.values()} == {"delivered"}
    assert after["items"] == []
    assert sorted(item["taskId"] for item in delivered["items"]) == sorted(task_ids)
    assert len(same_ids) == 2  # each delivery kept its webhook-id
    assert bad.status_code == 400
    assert both.status_code == 400
    assert unknown.json()["items"][0]["outcome"] == "refused"


async def test_executors_show_the_last_hours_outcomes(
    client: httpx.AsyncClient, auth: dict[str, str], admin: dict[str, str], sample_image: str
) -> None:
    for n in range(3):
        await client.post(
            f"/api/abilities/{PROMPT}/invoke",
            json={"inputs": {"url": f"{sample_image}?{n}"}},
            headers=auth,
        )
    items = (await client.get("/api/admin/executors", headers=admin)).json()["items"]
    recent = items[0]["recent"]
    assert recent["calls"] == 3
    assert recent["codes"] == {"0": 3}
    assert recent["failures"] == 0
    assert 0 <= recent["p50Ms"] <= recent["p95Ms"]


async def test_every_admin_route_refuses_an_app_token(
    client: httpx.AsyncClient, auth: dict[str, str], sample_image: str
) -> None:
    response = await client.post(
        f"/api/abilities/{PROMPT}/invoke", json={"inputs": {"url": sample_image}}, headers=auth
    )
    task_id = response.json()["metadata"]["taskId"]
    log_id = (await client.get(f"/api/ability_tasks/{task_id}", headers=auth)).json()["logId"]
    routes = [
        ("GET", "/api/admin/tasks", None),
        ("GET", f"/api/admin/tasks/{task_id}", None),
        ("GET", "/api/admin/call_logs", None),
        ("GET", f"/api/admin/call_logs/{log_id}", None),
        ("GET", "/api/admin/callbacks", None),
        ("POST", "/api/admin/callbacks/redeliver", {"taskIds": [task_id]}),
        ("GET", "/api/admin/executors", None),
    ]
    for method, url, body in routes:
        forbidden = await client.request(method, url, json=body, headers=auth)
        assert forbidden.status_code == 403, (method, url)
        assert task_id not in forbidden.text
        assert (await client.request(method, url, json=body)).status_code == 401
