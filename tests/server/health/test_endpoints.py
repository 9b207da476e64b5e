"""``/readyz``: ready only while the database and the media storage work; each executor's
breaker is reported, an open one never makes the node unready. ``/healthz`` looks at nothing."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx

from ability_gateway.server.state import GatewayState


async def test_readiness_lists_each_executor_breaker(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "executors": [{"id": "default", "state": "closed"}],
    }


async def test_an_open_breaker_is_shown_and_the_node_stays_ready(
    client: httpx.AsyncClient, gateway: GatewayState
) -> None:
    executor = gateway.executors.get("default")
    assert executor is not None
    for _ in range(executor.breaker.threshold):
        executor.breaker.record(False, "cannot connect to Coze")
    assert executor.breaker.state == "open"
    response = await client.get("/readyz")
    assert response.status_code == 200
    # Why it opened is for admins (GET /executors), not for an unauthenticated probe.
    assert response.json()["executors"] == [{"id": "default", "state": "open"}]


async def test_unwritable_media_storage_is_not_ready(
    client: httpx.AsyncClient, gateway: GatewayState
) -> None:
    # Root may write to a read-only directory, so the directory becomes a file instead.
    media = Path(gateway.settings.resolved_storage_url.removeprefix("file://"))
    shutil.rmtree(media)
    media.write_bytes(b"not a directory")
    response = await client.get("/readyz", headers={"X-Request-ID": "r-storage"})
    assert response.status_code == 503
    body = response.json()
    assert body["message"].startswith("media storage unavailable: ")
    assert str(media) not in body["message"]  # the path is for the log only
    assert body == {"code": 503, "message": body["message"], "requestId": "r-storage"}
    assert (await client.get("/healthz")).status_code == 200  # liveness looks at nothing

    media.unlink()  # the directory back: ready again, with no restart
    media.mkdir()
    assert (await client.get("/readyz")).status_code == 200
