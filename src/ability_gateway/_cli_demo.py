"""The ``demo`` command: the Coze simulator and the gateway together, with a fresh token.

This module owns starting the simulator as a child process (tied to this one's life),
pointing the gateway's settings at it, waiting for it to answer, minting a demo token,
printing the banner with the URLs and a ``curl`` to try, and stopping both on Ctrl-C or
SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Annotated

import typer

from ability_gateway._cli_server import (
    _configure_logging,
    _run_server,
    _settings,
    get_settings_cache_clear,
)
from ability_gateway._cli_tokens import _token_create


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _die_with_parent() -> None:
    """In a child process: get SIGTERM when the parent dies, however it dies (Linux)."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass


def _wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.1)


def demo(
    port: Annotated[int, typer.Option(help="Gateway port.")] = 8080,
    sim_port: Annotated[int, typer.Option(help="Coze simulator port.")] = 8090,
    host: Annotated[str, typer.Option(help="Interface for both.")] = "127.0.0.1",
) -> None:
    """Start the Coze simulator and the gateway on SQLite + ./data, with a fresh demo token."""
    import base64
    import secrets

    sim_url = f"http://{host}:{sim_port}"
    notice_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    # The demo always runs against its own simulator, whatever the shell exports.
    os.environ["GATEWAY_COZE_BASE_URL"] = sim_url
    os.environ["GATEWAY_COZE_API_TOKEN"] = "pat_simulator"
    os.environ["GATEWAY_PROVIDER_CALLBACK_SECRET"] = notice_secret
    # Its Coze is its own simulator on this machine: it may read the simulator's image URLs.
    os.environ["GATEWAY_COZE_ALLOW_INTERNAL_IMAGE_URLS"] = "true"
    # Callbacks to a receiver on this machine are the point of a demo.
    os.environ.setdefault("GATEWAY_EGRESS_ALLOW", "127.0.0.0/8")
    get_settings_cache_clear()
    settings = _settings()
    _configure_logging(settings)
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ability_gateway",
            "coze-sim",
            "--host",
            host,
            "--port",
            str(sim_port),
            "--notify-url",
            f"http://{host}:{port}/api/provider_callbacks/coze",
            "--notify-secret",
            notice_secret,
        ],
        preexec_fn=_die_with_parent,
    )
    # uvicorn re-raises the SIGTERM it caught once it has shut down; turning it into SystemExit
    # lets the `finally` below stop the simulator too.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        _wait_http(f"{sim_url}/healthz", 30)
        created = asyncio.run(_token_create(settings, "demo", True, None))
        base = f"http://{host}:{port}"
        image = f"{sim_url}/files/samples/landscape.png"
        body = json.dumps({"inputs": {"url": image, "shuru": "水彩风格"}}, ensure_ascii=False)
        banner = "\n".join(
            [
                "",
                "Ability Gateway demo is running (Coze simulator behind it).",
                f"  gateway:   {base}   (API docs: {base}/docs)",
                f"  simulator: {sim_url}",
                f"  token:     {created['token']}",
                "  for the SDK and CLI:",
                f"    export GATEWAY_URL={base} GATEWAY_TOKEN={created['token']}",
                f"  callback secret: {created['callbackSecret']}",
                "",
                "Try:",
                f"  curl -s {base}/api/abilities -H 'Authorization: Bearer {created['token']}'",
                f"  curl -s {base}/api/abilities/ability_coze_prompt_extract/invoke \\",
                f"    -H 'Authorization: Bearer {created['token']}' \\",
                f"    -H 'Content-Type: application/json' -d '{body}'",
                "",
                "Ctrl-C stops both.",
            ]
        )
        settings = settings.model_copy(update={"host": host, "port": port})
        _run_server(settings, host, port, on_ready=banner)
    finally:
        simulator.terminate()
        try:
            simulator.wait(10)
        except subprocess.TimeoutExpired:
            simulator.kill()
