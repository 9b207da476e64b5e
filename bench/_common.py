"""Helpers the benchmarks share: free ports, readiness, process CPU, tokens, and a bare relay.

``python bench/_common.py relay PORT UPSTREAM`` runs the relay: a tiny aiohttp app (on uvloop,
like the gateway) that forwards every POST to ``UPSTREAM`` + the same path through one pooled
``aiohttp.ClientSession`` and answers what came back. It is the Python floor of a gateway: an
HTTP server and client and nothing else.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

GATEWAY = [sys.executable, "-m", "ability_gateway"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def create_token(env: dict[str, str]) -> str:
    created = subprocess.run(
        [*GATEWAY, "token", "create", "--name", "bench", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(created.stdout)["token"])


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


_SESSION = web.AppKey("session", aiohttp.ClientSession)


def relay_app(upstream: str) -> web.Application:
    app = web.Application()

    async def session(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(upstream) as pooled:
            app[_SESSION] = pooled
            yield

    async def forward(request: web.Request) -> web.Response:
        headers = {
            "Authorization": request.headers.get("Authorization", ""),
            "Content-Type": request.headers.get("Content-Type", "application/json"),
        }
        body = await request.read()
        async with request.app[_SESSION].post(request.path, data=body, headers=headers) as resp:
            answer = await resp.read()
            return web.Response(status=resp.status, body=answer, content_type=resp.content_type)

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.cleanup_ctx.append(session)
    app.router.add_get("/healthz", health)
    app.router.add_post("/{path:.*}", forward)
    return app


if __name__ == "__main__" and sys.argv[1:2] == ["relay"]:
    import uvloop

    port, upstream = int(sys.argv[2]), sys.argv[3]
    web.run_app(
        relay_app(upstream),
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )
