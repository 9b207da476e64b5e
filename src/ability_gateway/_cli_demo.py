"""The ``demo`` command: the Coze simulator and the gateway together, with a demo token.

This module owns starting the simulator as a child process (tied to this one's life),
pointing the gateway's settings at it, waiting for it to answer, the demo token (made once,
kept in ``<data dir>/demo-token.json`` readable by this user only, and reused while it is
valid), printing the banner with the URLs and a ``curl`` to try, and stopping both on
Ctrl-C or SIGTERM.
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
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ability_gateway._cli_server import (
    _configure_logging,
    _run_server,
    _settings,
    get_settings_cache_clear,
)
from ability_gateway._cli_tokens import _token_create

if TYPE_CHECKING:
    from ability_gateway.server.config import Settings


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


DEMO_TOKEN_FILE = "demo-token.json"


async def _still_valid(settings: Settings, token: str) -> bool:
    from ability_gateway.server.auth.service import TokenCache, authenticate
    from ability_gateway.server.db import Database
    from ability_gateway.server.errors import Unauthorized
    from ability_gateway.server.migrate import upgrade_to_head

    db = Database(settings.resolved_database_url)
    try:
        await upgrade_to_head(db)
        await authenticate(db, TokenCache(0), f"Bearer {token}")
    except Unauthorized:
        return False
    finally:
        await db.dispose()
    return True


def _demo_token(settings: Settings) -> tuple[dict[str, object], bool]:
    """The demo's admin token and whether it was reused: the one in the data directory
    while it still works (not revoked, not expired, same database), else a new one."""
    path = Path(settings.data_dir) / DEMO_TOKEN_FILE
    try:
        kept = json.loads(path.read_text())
        if isinstance(kept.get("token"), str) and asyncio.run(
            _still_valid(settings, kept["token"])
        ):
            return kept, True
    except (OSError, ValueError):
        pass
    created = asyncio.run(_token_create(settings, "demo", True, None))
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        json.dump(created, out)
    return created, False


def demo(
    port: Annotated[int, typer.Option(help="Gateway port.")] = 8080,
    sim_port: Annotated[int, typer.Option(help="Coze simulator port.")] = 8090,
    host: Annotated[str, typer.Option(help="Interface for both.")] = "127.0.0.1",
) -> None:
    """Start the Coze simulator and the gateway on SQLite + ./data, with a demo token (the
    same one on every run while it is valid)."""
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
        created, reused = _demo_token(settings)
        base = f"http://{host}:{port}"
        image = f"{sim_url}/files/samples/landscape.png"
        body = json.dumps({"inputs": {"url": image, "shuru": "水彩风格"}}, ensure_ascii=False)
        kept = Path(settings.data_dir) / DEMO_TOKEN_FILE
        banner = "\n".join(
            [
                "",
                "Ability Gateway demo is running (Coze simulator behind it).",
                f"  console:   {base}/console   (sign in with the token below)",
                f"  gateway:   {base}   (API docs: {base}/docs)",
                f"  simulator: {sim_url}   (sample images: {sim_url}/files/samples/)",
                f"  token:     {created['token']}",
                f"             ({'reused from' if reused else 'admin, kept in'} {kept})",
                "  for the SDK, the CLI (.venv/bin/ability-gateway) and the curls below:",
                f"    export GATEWAY_URL={base} GATEWAY_TOKEN={created['token']}",
                f"  callback secret: {created['callbackSecret']}",
                "  callbacks may go to receivers on this machine (GATEWAY_EGRESS_ALLOW="
                f"{os.environ['GATEWAY_EGRESS_ALLOW']}; production allows none by default)",
                "",
                "Try (inputs are URLs the workflow can fetch, such as the simulator's samples):",
                '  curl -s "$GATEWAY_URL/api/abilities" -H "Authorization: Bearer $GATEWAY_TOKEN"',
                '  curl -s "$GATEWAY_URL/api/abilities/ability_coze_prompt_extract/invoke" \\',
                '    -H "Authorization: Bearer $GATEWAY_TOKEN" \\',
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
