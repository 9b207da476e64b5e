"""How many in-flight tasks one gateway process holds: memory and runner lag.

Starts the simulator (generation jobs take ``--job-seconds``) and one gateway, submits
``--tasks`` long generation tasks (each answers 202 and its job then polls the query
workflow every 3 s growing to 15 s), and while they are all in flight samples:

- the gateway's resident memory (baseline before the load, then with N tasks in flight);
- runner lag: how overdue the most overdue due job is (database clock), sampled every 0.5 s;
- how long the runner takes to run every task's first step (the Coze call that starts its job).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _common import free_port, wait_ready

GEN = "ability_coze_image_gen_4step"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def submit(url: str, token: str, image: str, count: int, concurrency: int) -> float:
    body = json.dumps(
        {"inputs": {"url": image, "width": 256, "height": 256, "prompt": "一只猫"}}
    ).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    sent = 0
    started = time.perf_counter()
    async with aiohttp.ClientSession(headers=headers) as session:

        async def worker() -> None:
            nonlocal sent
            while sent < count:
                sent += 1
                async with session.post(f"{url}/api/abilities/{GEN}/invoke", data=body) as r:
                    await r.read()
                    assert r.status == 202, r.status

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--job-seconds", type=float, default=60.0)
    parser.add_argument("--observe-seconds", type=float, default=30.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agw-inflight-"))
    sim_port, gw_port = free_port(), free_port()
    sim_url, gw_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{gw_port}"
    env = {
        **os.environ,
        "GATEWAY_DATA_DIR": str(work),
        "GATEWAY_COZE_BASE_URL": sim_url,
        "GATEWAY_COZE_API_TOKEN": "pat_simulator",
        "GATEWAY_LOG_LEVEL": "WARNING",
        # The simulator is a Coze on this machine: it may read its own loopback image URLs.
        "GATEWAY_COZE_ALLOW_INTERNAL_IMAGE_URLS": "true",
    }
    cmd = [sys.executable, "-m", "ability_gateway"]
    sim = subprocess.Popen(
        [*cmd, "coze-sim", "--port", str(sim_port), "--job-seconds", str(args.job_seconds)],
        stdout=subprocess.DEVNULL,
    )
    gateway = None
    try:
        wait_ready(f"{sim_url}/healthz", sim)
        token = json.loads(
            subprocess.run(
                [*cmd, "token", "create", "--name", "bench", "--json"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )["token"]
        gateway = subprocess.Popen(
            [*cmd, "serve", "--port", str(gw_port)], env=env, stdout=subprocess.DEVNULL
        )
        wait_ready(f"{gw_url}/healthz", gateway)
        time.sleep(1)
        base_rss = rss_mb(gateway.pid)
        image = f"{sim_url}/files/samples/square.png"
        began = time.monotonic()
        accept_rate = asyncio.run(submit(gw_url, token, image, args.tasks, 32))

        db = sqlite3.connect(f"file:{work / 'gateway.db'}?mode=ro", uri=True)
        now_ms = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"
        lags: list[float] = []
        first_steps_done = None
        peak_rss = 0.0
        while time.monotonic() - began < args.observe_seconds:
            overdue = db.execute(
                f"SELECT MAX({now_ms} - next_run_at) FROM jobs WHERE state = 'queued' "
                f"AND next_run_at <= {now_ms}"
            ).fetchone()[0]
            lags.append(max(0, overdue or 0))
            if first_steps_done is None:
                started = db.execute(
                    "SELECT COUNT(*) FROM tasks WHERE external_id IS NOT NULL"
                ).fetchone()[0]
                if started >= args.tasks:
                    first_steps_done = time.monotonic() - began
            in_flight = db.execute(
                "SELECT COUNT(*) FROM tasks WHERE status IN ('queued', 'running')"
            ).fetchone()[0]
            peak_rss = max(peak_rss, rss_mb(gateway.pid))
            time.sleep(0.5)
        lags.sort()
        print(f"tasks submitted: {args.tasks} (accepted at {accept_rate:.0f}/s, 32 concurrent)")
        print(f"in flight at the end of the observation: {in_flight}")
        print(
            f"gateway RSS: {base_rss:.1f} MB idle -> {peak_rss:.1f} MB peak "
            f"({(peak_rss - base_rss) * 1024 / args.tasks:.1f} KB per in-flight task)"
        )
        if first_steps_done is not None:
            print(
                f"every task's first step (the Coze call) done {first_steps_done:.1f} s after the first submit"
            )
        else:
            print("not every task's first step ran within the observation window")
        print(
            f"runner lag (most overdue due job, {len(lags)} samples): "
            f"p50 {statistics.median(lags):.0f} ms, p99 {lags[int(0.99 * (len(lags) - 1))]:.0f} ms, "
            f"max {lags[-1]:.0f} ms"
        )
    finally:
        for proc in (gateway, sim):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
