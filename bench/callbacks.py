"""Callbacks delivered per second by one runner process to a loopback receiver.

Phase 1: a gateway with its runner off finishes ``--tasks`` synchronous invocations, each
with a ``callbackUrl``: their deliveries wait in the database. Phase 2: one
``ability-gateway worker`` starts and the receiver times how fast they all arrive (signed,
one attempt each). The receiver answers ``{"code": 0}`` at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).parent))
from _common import free_port, wait_ready


class Receiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.times: list[float] = []
        self.ids: set[str] = set()
        ready = threading.Event()

        async def handle(request: web.Request) -> web.Response:
            await request.read()
            self.times.append(time.monotonic())
            self.ids.add(request.headers.get("webhook-id", ""))
            return web.json_response({"code": 0, "message": "success"})

        async def main() -> None:
            app = web.Application()
            app.router.add_post("/callback", handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            ready.set()
            await asyncio.Event().wait()

        threading.Thread(target=lambda: asyncio.run(main()), daemon=True).start()
        ready.wait(10)


async def invoke_all(url: str, body: bytes, count: int, token: str = "") -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sent = 0
    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker() -> None:
            nonlocal sent
            while sent < count:
                sent += 1
                async with session.post(url, data=body) as r:
                    await r.read()
                    assert r.status == 200, r.status

        await asyncio.gather(*(worker() for _ in range(32)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="agw-callbacks-"))
    sim_port, gw_port = free_port(), free_port()
    sim_url, gw_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
    receiver = Receiver()
    env = {
        **os.environ,
        "GATEWAY_DATA_DIR": str(work),
        "GATEWAY_COZE_BASE_URL": sim_url,
        "GATEWAY_COZE_API_TOKEN": "pat_simulator",
        "GATEWAY_LOG_LEVEL": "WARNING",
        "GATEWAY_EGRESS_ALLOW": "127.0.0.0/8",
        "GATEWAY_RUNNER_ENABLED": "false",
    }
    cmd = [sys.executable, "-m", "ability_gateway"]
    procs = [
        subprocess.Popen([*cmd, "coze-sim", "--port", str(sim_port)], stdout=subprocess.DEVNULL)
    ]
    try:
        wait_ready(f"{sim_url}/healthz", procs[0])
        token = json.loads(
            subprocess.run(
                [*cmd, "token", "create", "--name", "bench", "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )["token"]
        procs.append(
            subprocess.Popen(
                [*cmd, "serve", "--port", str(gw_port)], env=env, stdout=subprocess.DEVNULL
            )
        )
        wait_ready(f"{gw_url}/healthz", procs[1])
        body = json.dumps(
            {
                "inputs": {"url": f"{sim_url}/files/samples/square.png"},
                "callbackUrl": f"http://127.0.0.1:{receiver.port}/callback",
            }
        ).encode()
        asyncio.run(
            invoke_all(
                f"{gw_url}/api/abilities/ability_coze_prompt_extract/invoke",
                body,
                args.tasks,
                token,
            )
        )
        assert not receiver.times, "no runner should be delivering yet"
        started = time.monotonic()
        procs.append(
            subprocess.Popen(
                [*cmd, "worker"],
                env={**env, "GATEWAY_RUNNER_ENABLED": "true"},
                stdout=subprocess.DEVNULL,
            )
        )
        deadline = started + 300
        while len(receiver.times) < args.tasks and time.monotonic() < deadline:
            time.sleep(0.1)
        delivered = len(receiver.times)
        first, last = receiver.times[0], receiver.times[-1]
        print(
            f"{delivered} of {args.tasks} callbacks delivered, {len(receiver.ids)} distinct webhook-ids"
        )
        print(f"worker start to first callback: {first - started:.2f} s")
        print(
            f"delivery rate: {delivered / (last - first):.0f} callbacks/s "
            f"(first to last; {delivered / (last - started):.0f}/s including start-up)"
        )
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
