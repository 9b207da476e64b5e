"""The tests' loopback guard (tests/loopback_guard): a look-up or connection beyond loopback,
in the pytest process or any Python process the tests start, is refused before the real
resolver runs and recorded, so it fails the test instead of reaching out."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.loopback_guard import loopback_guard
from tests.support import (
    cli,
    database_env,
    free_port,
    gateway_process,
    start_process,
    stop_process,
    wait_http,
)

OUTSIDE = "your-server.com"


def test_an_outside_name_is_refused_before_the_real_resolver_runs(tmp_path: Path) -> None:
    looked_up: list[Any] = []

    def real_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        looked_up.append(host)
        return []

    guarded = loopback_guard.wrap_getaddrinfo(real_getaddrinfo)
    with loopback_guard.capture(tmp_path / "records.jsonl") as records:
        with pytest.raises(loopback_guard.OutsideLoopback):
            guarded(OUTSIDE, 443)
        for host in ("127.0.0.1", "localhost", "::1", None):
            guarded(host, 80)
    assert looked_up == ["127.0.0.1", "localhost", "::1", None]
    assert [(r["what"], r["target"]) for r in records] == [("resolve", repr(OUTSIDE))]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1", True),
        ("2130706433", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("0.0.0.0", True),  # what servers bind to
        ("localhost", True),
        (None, True),
        ("your-server.com", False),
        ("example.test", False),
        ("10.0.0.1", False),
        ("192.0.2.1", False),
        ("2001:db8::1", False),
        ("localhost.example", False),
    ],
)
def test_only_loopback_hosts_pass(host: str | None, loopback: bool) -> None:
    assert loopback_guard.is_loopback_host(host) is loopback


async def test_this_process_is_guarded(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    with loopback_guard.capture(tmp_path / "records.jsonl") as records:
        with pytest.raises(OSError, match="loopback guard"):
            socket.getaddrinfo(OUTSIDE, 443)
        with pytest.raises(OSError, match="loopback guard"):
            await loop.getaddrinfo(OUTSIDE, 443)
        with socket.socket() as sock, pytest.raises(OSError, match="loopback guard"):
            sock.connect(("192.0.2.1", 80))
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://{OUTSIDE}/", timeout=5)
    assert [r["what"] for r in records] == ["resolve", "resolve", "connect to", "resolve"]


CHILD = f"""
import asyncio, socket, uvloop, aiohttp
try:
    socket.getaddrinfo({OUTSIDE!r}, 443)
except OSError as exc:
    print("socket:", exc)
async def main():
    loop = asyncio.get_running_loop()
    try:
        await loop.getaddrinfo({OUTSIDE!r}, 443)
    except OSError as exc:
        print("uvloop:", exc)
    try:
        await loop.create_connection(asyncio.Protocol, "192.0.2.1", 80)
    except OSError as exc:
        print("uvloop connect:", exc)
    async with aiohttp.ClientSession() as session:
        try:
            await session.get("https://{OUTSIDE}/callback")
        except aiohttp.ClientError as exc:
            print("aiohttp:", type(exc).__name__)
uvloop.run(main())
"""


def _child_env(record: Path) -> dict[str, str]:
    return {**os.environ, loopback_guard.RECORD_ENV: str(record)}


def test_a_child_process_is_guarded_on_uvloop_too(tmp_path: Path) -> None:
    record = tmp_path / "child.jsonl"
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=_child_env(record),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("loopback guard") == 3, result.stdout
    assert "aiohttp: ClientConnectorDNSError" in result.stdout
    records, _ = loopback_guard.read_records(record)
    assert [r["what"] for r in records] == ["resolve", "resolve", "connect to", "resolve"]


def _wait_for_record(record: Path, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records, _ = loopback_guard.read_records(record)
        if records:
            return records
        time.sleep(0.05)
    raise AssertionError("nothing was recorded")


def test_a_gateway_process_resolving_an_outside_callback_is_caught(
    tmp_path: Path, sim_url: str
) -> None:
    # What tests/test_spec_examples.py did with the guide's https://your-server.com/callback.
    record = tmp_path / "gateway.jsonl"
    env = {
        loopback_guard.RECORD_ENV: str(record),
        "GATEWAY_DATA_DIR": str(tmp_path),
        "GATEWAY_COZE_BASE_URL": sim_url,
        "GATEWAY_COZE_API_TOKEN": "pat_simulator",
        "GATEWAY_EGRESS_ALLOW": "127.0.0.0/8",
        **database_env(),
    }
    created = cli("token", "create", "--name", "guard", "--json", env=env)
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]
    with gateway_process(env, tmp_path) as url:
        response = httpx.post(
            f"{url}/api/abilities/ability_coze_prompt_extract/invoke",
            json={
                "inputs": {"url": f"{sim_url}/files/samples/square.png"},
                "callbackUrl": f"https://{OUTSIDE}/callback",
            },
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert response.status_code == 200, response.text
        records = _wait_for_record(record)
    assert records[0]["what"] == "resolve"
    assert records[0]["target"] == repr(OUTSIDE)
    assert "serve" in records[0]["argv"]


def test_a_simulator_allowed_remote_images_is_still_guarded(tmp_path: Path) -> None:
    record = tmp_path / "simulator.jsonl"
    port = free_port()
    proc = start_process(
        ["coze-sim", "--port", str(port), "--allow-remote-images"],
        {loopback_guard.RECORD_ENV: str(record)},
        tmp_path / "simulator.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc=proc)
        answer = httpx.post(
            f"{url}/v1/workflow/run",
            json={
                "workflow_id": "7597535455856295936",  # prompt extraction
                "parameters": {"url": f"http://{OUTSIDE}/image.png"},
            },
            headers={"Authorization": "Bearer pat_simulator"},
            timeout=30,
        ).json()
    finally:
        stop_process(proc)
    assert answer["code"] == 720701013
    records, _ = loopback_guard.read_records(record)
    assert [(r["what"], r["target"]) for r in records] == [("resolve", repr(OUTSIDE))]
