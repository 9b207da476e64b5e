"""The ``ability-gateway`` command through its real entry point."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.conftest import LiveGateway
from tests.support import cli, database_env


def test_token_create_json_list_and_revoke(tmp_path: Path) -> None:
    env = {"GATEWAY_DATA_DIR": str(tmp_path), **database_env()}
    created = cli("token", "create", "--name", "ci", "--admin", "--json", env=env)
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)
    assert {"id", "name", "token", "callbackSecret"} <= set(token)
    assert token["name"] == "ci"
    assert token["token"].startswith("agw_")
    assert token["callbackSecret"].startswith("whsec_")
    assert token["scopes"] == ["abilities", "admin"]

    listed = cli("token", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [r["id"] for r in rows] == [token["id"]]
    assert token["token"] not in listed.stdout

    revoked = cli("token", "revoke", token["id"], env=env)
    assert revoked.returncode == 0
    assert json.loads(cli("token", "list", "--json", env=env).stdout)[0]["revoked_at"]
    again = cli("token", "revoke", token["id"], env=env)
    assert again.returncode == 1
    assert "no active token" in again.stderr


def test_token_create_prints_the_token_once_in_text(tmp_path: Path) -> None:
    result = cli(
        "token",
        "create",
        "--name",
        "human",
        env={"GATEWAY_DATA_DIR": str(tmp_path), **database_env()},
    )
    assert result.returncode == 0
    assert "token:           agw_" in result.stdout
    assert "callback secret: whsec_" in result.stdout


def test_token_create_refuses_an_empty_name(tmp_path: Path) -> None:
    result = cli(
        "token", "create", "--name", " ", env={"GATEWAY_DATA_DIR": str(tmp_path), **database_env()}
    )
    assert result.returncode == 2
    assert "must not be empty" in result.stderr


def test_revoked_token_is_refused_by_a_running_server(live_gateway: LiveGateway) -> None:
    created = json.loads(
        cli("token", "create", "--name", "short", "--json", env=live_gateway.env).stdout
    )
    headers = {"Authorization": f"Bearer {created['token']}"}
    assert httpx.get(f"{live_gateway.url}/api/abilities", headers=headers).status_code == 200
    assert cli("token", "revoke", created["id"], env=live_gateway.env).returncode == 0
    # The server remembers valid tokens for GATEWAY_AUTH_CACHE_SECONDS (2 s by default).
    deadline = time.monotonic() + 10
    while True:
        response = httpx.get(f"{live_gateway.url}/api/abilities", headers=headers)
        if response.status_code != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert response.status_code == 401
    assert response.json()["code"] == 401


def test_demo_serves_what_it_prints(tmp_path: Path) -> None:
    import os
    import re
    import subprocess
    import sys

    from tests.support import free_port

    port, sim_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ability_gateway",
            "demo",
            "--port",
            str(port),
            "--sim-port",
            str(sim_port),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops both." in line:
                break
        out = "".join(lines)
        token = re.search(r"token:\s+(agw_\S+)", out)
        body = re.search(r"-d '(\{.*\})'", out)
        assert token, out
        assert body, out
        assert f"http://127.0.0.1:{port}" in out
        assert f"console:   http://127.0.0.1:{port}/console" in out
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/abilities/ability_coze_prompt_extract/invoke",
            headers={
                "Authorization": f"Bearer {token.group(1)}",
                "Content-Type": "application/json",
            },
            content=body.group(1).encode(),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "succeeded"
        assert (tmp_path / "data" / "gateway.db").exists()
        # An outpaint's ossUrl is served by the demo gateway itself.
        outpaint = httpx.post(
            f"http://127.0.0.1:{port}/api/abilities/ability_coze_outpaint/invoke",
            headers={"Authorization": f"Bearer {token.group(1)}"},
            json={
                "imageUrl": f"http://127.0.0.1:{sim_port}/files/samples/square.png",
                "inputs": {
                    "expand_top": 8,
                    "expand_bottom": 8,
                    "expand_left": 0,
                    "expand_right": 0,
                },
            },
            timeout=30,
        )
        assert outpaint.status_code == 200, outpaint.text
        oss_url = outpaint.json()["images"][0]["ossUrl"]
        assert oss_url.startswith(f"http://127.0.0.1:{port}/media/")
        png = httpx.get(oss_url)
        assert png.status_code == 200
        assert png.headers["content-type"] == "image/png"
        assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        proc.terminate()
        proc.wait(15)
    # Stopping the demo stops its simulator too.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{sim_port}/healthz", timeout=1)
        except httpx.TransportError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the simulator outlived the demo")
