"""Sync-invoke throughput on PostgreSQL: one gateway node versus two, same load generator.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth): a fresh database is created and dropped.
32 concurrent clients, the simulator at 20 ms; with two nodes the clients alternate.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _common import free_port, wait_ready

PG = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]


async def load(urls: list[str], token: str, body: bytes, seconds: float) -> float:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    done = 0
    async with aiohttp.ClientSession(
        headers=headers, connector=aiohttp.TCPConnector(limit=64)
    ) as s:
        stop = time.perf_counter() + seconds

        async def worker(url: str) -> None:
            nonlocal done
            while time.perf_counter() < stop:
                async with s.post(url, data=body) as r:
                    await r.read()
                    if r.status == 200:
                        done += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker(urls[i % len(urls)]) for i in range(32)))
        return done / (time.perf_counter() - began)


def main() -> None:
    try:
        subprocess.run(["pg_isready", *PG[:4]], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        print("PostgreSQL not reachable on 127.0.0.1:5432: scale benchmark skipped")
        return
    name = f"agw_bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(["createdb", *PG, name], check=True)
    work = Path(tempfile.mkdtemp(prefix="agw-scale-"))
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    env = {
        **os.environ,
        "GATEWAY_DATA_DIR": str(work),
        "GATEWAY_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}",
        "GATEWAY_COZE_BASE_URL": sim_url,
        "GATEWAY_COZE_API_TOKEN": "pat_simulator",
        "GATEWAY_LOG_LEVEL": "WARNING",
        "GATEWAY_EGRESS_ALLOW": "127.0.0.0/8",  # mirror the simulator's outputs, as in production
    }
    cmd = [sys.executable, "-m", "ability_gateway"]
    procs = [
        subprocess.Popen(
            [*cmd, "coze-sim", "--port", str(sim_port), "--latency-ms", "20"],
            stdout=subprocess.DEVNULL,
        )
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
        ports = [free_port(), free_port()]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        for port in ports:
            procs.append(
                subprocess.Popen(
                    [*cmd, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL
                )
            )
        for url, proc in zip(urls, procs[1:], strict=True):
            wait_ready(f"{url}/healthz", proc)
        # Upscale has no result cache: every invoke is a real upstream call (its 64-px output
        # is mirrored into local storage too, as in production).
        path = "/api/abilities/ability_coze_upscale_8k/invoke"
        body = json.dumps(
            {"inputs": {"url": f"{sim_url}/files/samples/square.png", "bianchang": 64}}
        ).encode()
        asyncio.run(load([urls[0] + path], token, body, 2))  # warm up
        one = asyncio.run(load([urls[0] + path], token, body, 8))
        two = asyncio.run(load([u + path for u in urls], token, body, 8))
        print(
            f"PostgreSQL, 32 concurrent sync invokes (upscale, simulator 20 ms), {os.cpu_count()} cores:"
        )
        print(f"  one node:  {one:7.1f}/s")
        print(f"  two nodes: {two:7.1f}/s  (ratio {two / one:.2f})")
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        subprocess.run(["dropdb", *PG, "--if-exists", "--force", name], capture_output=True)


if __name__ == "__main__":
    main()
