"""The README's callback receiver runs as written against real callbacks."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import uvicorn

from ability_gateway.server.auth.service import create_token
from tests.server.conftest import LiveFactory, live  # noqa: F401 - the fixture
from tests.support import free_port

README = Path(__file__).resolve().parents[1] / "README.md"


def receiver_source() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("A receiver, like spec §5.5")
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert match, "the README's receiver example is missing"
    return match.group(1)


async def test_the_readme_receiver_verifies_and_drops_duplicates(
    live: LiveFactory,  # noqa: F811 - the fixture imported above
) -> None:
    async with live(egress_allow="127.0.0.0/8") as gw:
        created = await create_token(gw.state.db, "readme")
        gw.headers = {"Authorization": f"Bearer {created.token}"}
        namespace: dict[str, Any] = {}
        exec(receiver_source().replace("whsec_…", created.callback_secret), namespace)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(namespace["app"], host="127.0.0.1", port=port, log_level="warning")
        )
        serving = asyncio.create_task(server.serve())
        try:
            while not server.started:
                await asyncio.sleep(0.02)
            response = await gw.invoke(
                "ability_coze_prompt_extract",
                {
                    "inputs": {"url": f"{gw.sim_url}/files/samples/square.png"},
                    "callbackUrl": f"http://127.0.0.1:{port}/callback",
                },
            )
            task_id = response.json()["metadata"]["taskId"]
            for _ in range(300):
                task = await gw.task(task_id)
                if task["callback"] and task["callback"]["state"] == "delivered":
                    break
                await asyncio.sleep(0.05)
            assert task["callback"]["state"] == "delivered"
            again = await gw.client.post(
                f"/api/ability_tasks/{task_id}/callbacks/redeliver", headers=gw.headers
            )
            attempts = again.json()["attempts"]
        finally:
            server.should_exit = True
            await serving
    assert len(namespace["seen"]) == 1
    assert [a["response"] for a in attempts] == [
        '{"code":0,"message":"success"}',
        '{"code":0,"message":"duplicate"}',
    ]
