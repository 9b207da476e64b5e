"""What the gateway adds to a synchronous invoke, against calling the Coze simulator directly.

Same load generator, same run, same simulator (fixed 20 ms latency):

    direct   POST {sim}/v1/workflow/run                      (the baseline)
    gateway  POST {gateway}/api/abilities/{id}/invoke        (auth, validation, task + log writes)

At concurrency 1 and 32 it prints p50/p99 in ms and as ratios, the throughput at 32, and the
gateway process's CPU time per invoke (from /proc, over the concurrency-32 run).
Run with ``make bench``; ``--seconds`` and ``--latency-ms`` change the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp

PROMPT_WORKFLOW = "7597535455856295936"
ABILITY = "ability_coze_prompt_extract"


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
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


@dataclass
class Run:
    latencies_ms: list[float]
    errors: int
    seconds: float

    @property
    def count(self) -> int:
        return len(self.latencies_ms)

    def pct(self, p: float) -> float:
        data = sorted(self.latencies_ms)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, int(p / 100 * len(data)))]

    @property
    def rps(self) -> float:
        return self.count / self.seconds


async def load(
    url: str, body: bytes, headers: dict[str, str], concurrency: int, seconds: float
) -> Run:
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        # Warm up connections and caches.
        for _ in range(min(20, 5 * concurrency)):
            async with session.post(url, data=body) as resp:
                await resp.read()
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop:
                started = time.perf_counter()
                async with session.post(url, data=body) as resp:
                    await resp.read()
                    ok = resp.status == 200
                if ok:
                    latencies.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return Run(latencies, errors, elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulator latency")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agw-bench-"))
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
        [*cmd, "coze-sim", "--port", str(sim_port), "--latency-ms", str(args.latency_ms)],
        stdout=subprocess.DEVNULL,
    )
    gateway = None
    try:
        wait_ready(f"{sim_url}/healthz", sim)
        created = subprocess.run(
            [*cmd, "token", "create", "--name", "bench", "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        token = json.loads(created.stdout)["token"]
        gateway = subprocess.Popen(
            [*cmd, "serve", "--port", str(gw_port)], env=env, stdout=subprocess.DEVNULL
        )
        wait_ready(f"{gw_url}/healthz", gateway)

        image = f"{sim_url}/files/samples/landscape.png"
        direct_body = json.dumps(
            {"workflow_id": PROMPT_WORKFLOW, "parameters": {"url": image}}
        ).encode()
        direct_headers = {
            "Authorization": "Bearer pat_simulator",
            "Content-Type": "application/json",
        }
        gw_body = json.dumps({"inputs": {"url": image}}).encode()
        gw_headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        results: dict[str, dict[str, float]] = {}
        print(
            f"simulator latency {args.latency_ms:g} ms, {args.seconds:g} s per run, {os.cpu_count()} cores"
        )
        for concurrency in (1, 32):
            direct = asyncio.run(
                load(
                    f"{sim_url}/v1/workflow/run",
                    direct_body,
                    direct_headers,
                    concurrency,
                    args.seconds,
                )
            )
            cpu_before = cpu_seconds(gateway.pid)
            via = asyncio.run(
                load(
                    f"{gw_url}/api/abilities/{ABILITY}/invoke",
                    gw_body,
                    gw_headers,
                    concurrency,
                    args.seconds,
                )
            )
            cpu_used = cpu_seconds(gateway.pid) - cpu_before
            cpu_per_invoke = cpu_used / max(1, via.count) * 1000
            row = {
                "direct_p50_ms": direct.pct(50),
                "direct_p99_ms": direct.pct(99),
                "gateway_p50_ms": via.pct(50),
                "gateway_p99_ms": via.pct(99),
                "added_p50_ms": via.pct(50) - direct.pct(50),
                "added_p99_ms": via.pct(99) - direct.pct(99),
                "p50_ratio": via.pct(50) / direct.pct(50),
                "p99_ratio": via.pct(99) / direct.pct(99),
                "direct_rps": direct.rps,
                "gateway_rps": via.rps,
                "throughput_ratio": via.rps / direct.rps,
                "gateway_cpu_ms_per_invoke": cpu_per_invoke,
                "gateway_errors": via.errors,
                "direct_errors": direct.errors,
            }
            results[f"c{concurrency}"] = row
            print(f"\nconcurrency {concurrency}:  ({direct.count} direct, {via.count} via gateway)")
            print(
                f"  p50  direct {row['direct_p50_ms']:7.2f} ms  gateway {row['gateway_p50_ms']:7.2f} ms"
                f"  added {row['added_p50_ms']:6.2f} ms  ratio {row['p50_ratio']:.3f}"
            )
            print(
                f"  p99  direct {row['direct_p99_ms']:7.2f} ms  gateway {row['gateway_p99_ms']:7.2f} ms"
                f"  added {row['added_p99_ms']:6.2f} ms  ratio {row['p99_ratio']:.3f}"
            )
            print(
                f"  throughput  direct {row['direct_rps']:7.1f}/s  gateway {row['gateway_rps']:7.1f}/s"
                f"  ratio {row['throughput_ratio']:.3f}"
            )
            print(f"  gateway CPU {cpu_per_invoke:.2f} ms per invoke; errors {via.errors}")
        print(
            "\naims: added p50 at c1 <= 1.5 ms; c32 throughput ratio >= 0.5; CPU <= 1.5 ms/invoke"
        )
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    finally:
        for proc in (gateway, sim):
            if proc is not None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    main()
