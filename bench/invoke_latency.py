"""What the gateway adds to a synchronous invoke, against calling the Coze simulator directly.

One run, one load generator, one simulator (fixed latency, default 20 ms), five paths:

    direct   POST {sim}/v1/workflow/run                          the baseline
    relay    POST {relay}/v1/workflow/run                        a bare aiohttp relay of ours
                                                                 (one pooled ClientSession):
                                                                 the Python floor
    miss     POST {gw}/api/abilities/ability_coze_prompt_extract/invoke
             the shipped ability (result cache on), a distinct ``shuru`` every request:
             every invoke is a cache miss and a real upstream run
    hit      the same ability with the same body every time: every invoke is a cache hit
    nocache  the same workflow as an ability with no cache (a copy of the shipped entry
             without ``cache``, added by a catalog override), distinct inputs
    miss_off, nocache_off
             miss and nocache on a second gateway (its own database) with Prometheus
             metrics and usage rollups off: what operations cost on the hot path

Every path is checked to be what it names: the gateway's ``X-Cache`` answers (MISS on every
miss, HIT on every hit, absent without a cache) and its call log, which records each upstream
run (one per miss and no-cache invoke, none for a hit). At concurrency 1 and 32 it prints
p50/p99 in ms and as ratios to direct, the throughput as ratios to direct and to the relay,
and the CPU time per request of the process serving the path (simulator, relay or gateway,
from /proc over the timed window). Run with ``make bench``; ``--seconds`` and
``--latency-ms`` change the load, ``--json`` writes the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import aiohttp
import uvloop
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from _common import GATEWAY, cpu_seconds, create_token, free_port, stop, wait_ready

PROMPT_WORKFLOW = "7597535455856295936"
ABILITY = "ability_coze_prompt_extract"
NOCACHE = "ability_bench_prompt_extract_nocache"
RELAY = Path(__file__).with_name("_common.py")
PATHS = ("direct", "relay", "miss", "miss_off", "hit", "nocache", "nocache_off")
EXPECT_CACHE = {"miss": "MISS", "hit": "HIT", "nocache": ""}  # "" = no X-Cache header
EXPECT_CACHE.update(miss_off="MISS", nocache_off="")
# Settings of the second gateway: the hot path without what operations add to it.
OPERATIONS_OFF = {"GATEWAY_METRICS_ENABLED": "false", "GATEWAY_USAGE_ROLLUPS": "false"}
_serial = itertools.count()  # every distinct body in the whole run is distinct


@dataclass
class Target:
    url: str
    headers: dict[str, str]
    body: Callable[[], bytes]
    pid: int  # the process serving this path
    db: Path | None = None  # that gateway's database


@dataclass
class Run:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    sent: int = 0  # requests sent, warm-up included
    seconds: float = 0.0
    cpu_s: float = 0.0  # the serving process's CPU over the timed window
    x_cache: Counter[str] = field(default_factory=Counter)  # timed 200s by X-Cache value
    upstream: int | None = None  # upstream runs the gateway logged during the path

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

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s / max(1, self.count) * 1000


async def load(target: Target, concurrency: int, seconds: float) -> Run:
    run = Run()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=target.headers) as session:

        async def warm() -> None:  # open every connection (and fill the hit's cache)
            for _ in range(max(2, 20 // concurrency)):
                run.sent += 1
                async with session.post(target.url, data=target.body()) as resp:
                    await resp.read()

        await asyncio.gather(*(warm() for _ in range(concurrency)))
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                body = target.body()
                run.sent += 1
                started = time.perf_counter()
                async with session.post(target.url, data=body) as resp:
                    await resp.read()
                    status, cache = resp.status, resp.headers.get("X-Cache", "")
                if status == 200:
                    run.latencies_ms.append((time.perf_counter() - started) * 1000)
                    run.x_cache[cache] += 1
                else:
                    run.errors += 1

        cpu_before, began = cpu_seconds(target.pid), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        run.seconds = time.perf_counter() - began
        run.cpu_s = cpu_seconds(target.pid) - cpu_before
    return run


def upstream_runs(db: Path) -> int:
    """Sync workflow runs the gateway has logged (a cache hit logs ``cache.hit`` instead)."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM call_logs WHERE operation = 'workflow.run'"
            ).fetchone()[0]
        )


def settle(db: Path, expected: int, timeout: float = 3.0) -> int:
    """The logged upstream runs once they reach ``expected`` (or stop growing)."""
    deadline = time.monotonic() + timeout
    seen = upstream_runs(db)
    while seen < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        seen = upstream_runs(db)
    return seen


def check(name: str, run: Run) -> list[str]:
    """Why ``run`` is not what ``name`` says it measures (empty when it is)."""
    problems = [f"{run.errors} non-200 answers"] if run.errors else []
    if name not in EXPECT_CACHE:
        return problems
    want = EXPECT_CACHE[name]
    if run.x_cache[want] != run.count:
        problems.append(f"X-Cache {dict(run.x_cache)} where every answer should be {want!r}")
    if name == "hit" and (run.upstream or 0) > 1:  # only the very first warm-up may run
        problems.append(f"{run.upstream} upstream runs for cache hits")
    if name != "hit" and run.upstream != run.sent:
        problems.append(f"{run.upstream} upstream runs for {run.sent} invokes")
    return problems


def verdict(name: str, run: Run) -> str:
    if name not in EXPECT_CACHE:
        return "-"
    share = run.x_cache[EXPECT_CACHE[name]] / max(1, run.count)
    header = f"X-Cache {EXPECT_CACHE[name]}" if EXPECT_CACHE[name] else "no X-Cache"
    return f"{header} {share:.0%}, upstream {run.upstream}/{run.sent}"


def override_catalog(path: Path) -> None:
    """The shipped catalog, unchanged, plus a copy of prompt extraction without a cache."""
    shipped = resources.files("ability_gateway.server").joinpath("catalog.yaml").read_text()
    catalog = yaml.safe_load(shipped)
    entry = next(a for a in catalog["abilities"] if a["id"] == ABILITY)
    copy = {k: v for k, v in entry.items() if k != "cache"}
    copy.update(id=NOCACHE, capabilityKey="bench_prompt_extract_nocache")
    catalog["abilities"].append(copy)
    path.write_text(yaml.safe_dump(catalog, allow_unicode=True, sort_keys=False))


def probe(name: str, target: Target) -> None:
    """One request through ``target``: it must answer a prompt (the simulator's or a task's)."""
    req = urllib.request.Request(target.url, data=target.body(), headers=target.headers)
    with urllib.request.urlopen(req, timeout=30) as resp:
        answer, cache = json.loads(resp.read()), resp.headers.get("X-Cache", "")
    if name not in EXPECT_CACHE:
        ok = answer.get("code") == 0 and "output" in json.loads(answer.get("data") or "{}")
    else:
        ok = answer.get("status") == "succeeded" and bool(answer.get("texts"))
        ok = ok and cache == EXPECT_CACHE[name]
    if not ok:
        raise RuntimeError(f"{name}: unexpected answer {answer} (X-Cache {cache!r})")


def row(run: Run, direct: Run, relay: Run) -> dict[str, float]:
    return {
        "count": run.count,
        "errors": run.errors,
        "p50_ms": run.pct(50),
        "p99_ms": run.pct(99),
        "p50_ratio": run.pct(50) / direct.pct(50),
        "p99_ratio": run.pct(99) / direct.pct(99),
        "added_p50_ms": run.pct(50) - direct.pct(50),
        "rps": run.rps,
        "rps_ratio_direct": run.rps / direct.rps,
        "rps_ratio_relay": run.rps / relay.rps,
        "cpu_ms_per_request": run.cpu_ms,
        **({"upstream_runs": run.upstream, "sent": run.sent} if run.upstream is not None else {}),
        **{f"x_cache_{k or 'absent'}": v for k, v in run.x_cache.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per measurement")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="simulator latency")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="agw-bench-"))
    override_catalog(work / "catalog.yaml")
    sim_port, relay_port = free_port(), free_port()
    sim_url, relay_url = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{relay_port}"
    env = {
        **os.environ,
        "GATEWAY_DATA_DIR": str(work),
        "GATEWAY_CATALOG_FILE": str(work / "catalog.yaml"),
        "GATEWAY_COZE_BASE_URL": sim_url,
        "GATEWAY_COZE_API_TOKEN": "pat_simulator",
        "GATEWAY_LOG_LEVEL": "WARNING",
        # The simulator is a Coze on this machine: it may read its own loopback image URLs.
        "GATEWAY_COZE_ALLOW_INTERNAL_IMAGE_URLS": "true",
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        sim = subprocess.Popen(
            [*GATEWAY, "coze-sim", "--port", str(sim_port), "--latency-ms", str(args.latency_ms)],
            stdout=subprocess.DEVNULL,
        )
        procs.append(sim)
        relay = subprocess.Popen([sys.executable, str(RELAY), "relay", str(relay_port), sim_url])
        procs.append(relay)
        wait_ready(f"{sim_url}/healthz", sim)
        wait_ready(f"{relay_url}/healthz", relay)
        gateways: dict[str, tuple[str, str, int]] = {}  # url, token, pid
        (work / "off").mkdir()
        off_env = {**env, **OPERATIONS_OFF, "GATEWAY_DATA_DIR": str(work / "off")}
        for variant, variant_env in (("on", env), ("off", off_env)):
            token = create_token(variant_env)
            port = free_port()
            gateway = subprocess.Popen(
                [*GATEWAY, "serve", "--port", str(port)], env=variant_env, stdout=subprocess.DEVNULL
            )
            procs.append(gateway)
            wait_ready(f"http://127.0.0.1:{port}/healthz", gateway)
            gateways[variant] = (f"http://127.0.0.1:{port}", token, gateway.pid)

        image = f"{sim_url}/files/samples/landscape.png"

        def coze_body() -> bytes:
            parameters = {"url": image, "shuru": f"bench {next(_serial)}"}
            return json.dumps({"workflow_id": PROMPT_WORKFLOW, "parameters": parameters}).encode()

        def invoke_body() -> bytes:
            return json.dumps(
                {"inputs": {"url": image, "shuru": f"bench {next(_serial)}"}}
            ).encode()

        same = json.dumps({"inputs": {"url": image, "shuru": "bench"}}).encode()
        coze = {"Authorization": "Bearer pat_simulator", "Content-Type": "application/json"}

        def ours(variant: str, ability: str, body: Callable[[], bytes]) -> Target:
            url, token, pid = gateways[variant]
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            db = work / ("off" if variant == "off" else "") / "gateway.db"
            return Target(f"{url}/api/abilities/{ability}/invoke", headers, body, pid, db)

        targets = {
            "direct": Target(f"{sim_url}/v1/workflow/run", coze, coze_body, sim.pid),
            "relay": Target(f"{relay_url}/v1/workflow/run", coze, coze_body, relay.pid),
            "miss": ours("on", ABILITY, invoke_body),
            "miss_off": ours("off", ABILITY, invoke_body),
            "hit": ours("on", ABILITY, lambda: same),
            "nocache": ours("on", NOCACHE, invoke_body),
            "nocache_off": ours("off", NOCACHE, invoke_body),
        }
        for name in PATHS:
            if name != "hit":
                probe(name, targets[name])

        print(
            f"simulator latency {args.latency_ms:g} ms, {args.seconds:g} s per run, "
            f"{os.cpu_count()} cores, SQLite (default settings)\ngateway code: "
            + str(resources.files("ability_gateway"))
        )
        results: dict[str, dict[str, dict[str, float]]] = {}
        problems: list[str] = []
        for concurrency in (1, 32):
            runs: dict[str, Run] = {}
            for name in PATHS:
                db = targets[name].db
                before = 0 if db is None else upstream_runs(db)
                run = uvloop.run(load(targets[name], concurrency, args.seconds))
                if db is not None:
                    expected = before + (0 if name == "hit" else run.sent)
                    run.upstream = settle(db, expected) - before
                runs[name] = run
                problems += [f"c{concurrency} {name}: {p}" for p in check(name, run)]
            direct, relay_run = runs["direct"], runs["relay"]
            results[f"c{concurrency}"] = {n: row(r, direct, relay_run) for n, r in runs.items()}
            print(f"\nconcurrency {concurrency}:")
            print(
                f"  {'path':11} {'n':>6} {'p50 ms':>8} {'x dir':>6} {'p99 ms':>8} {'x dir':>6}"
                f" {'req/s':>7} {'x dir':>6} {'x relay':>7} {'cpu ms/req':>10}  check"
            )
            for name, run in runs.items():
                r = results[f"c{concurrency}"][name]
                print(
                    f"  {name:11} {run.count:6d} {r['p50_ms']:8.2f} {r['p50_ratio']:6.3f}"
                    f" {r['p99_ms']:8.2f} {r['p99_ratio']:6.3f} {r['rps']:7.1f}"
                    f" {r['rps_ratio_direct']:6.3f} {r['rps_ratio_relay']:7.3f}"
                    f" {r['cpu_ms_per_request']:10.3f}  {verdict(name, run)}"
                )
            for name in ("miss", "nocache"):
                on, off = runs[name], runs[f"{name}_off"]
                print(
                    f"  operations (metrics + usage rollups) on {name}: cpu/req x"
                    f"{on.cpu_ms / off.cpu_ms:.3f} of off, req/s x{on.rps / off.rps:.3f}"
                )
        print(
            "\ncpu ms/req: the serving process (simulator for direct, relay, gateway); "
            "x dir / x relay: ratio to that path in the same run"
        )
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        if problems:
            print("\nCHECKS FAILED:\n  " + "\n  ".join(problems))
            sys.exit(1)
        print("checks: every path measured what it names")
    finally:
        stop(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
