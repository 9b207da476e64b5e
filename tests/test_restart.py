"""Nothing lost: real gateway processes killed with SIGKILL mid-work, and two runners on one
database. These are the slowest tests (each takes several seconds of real time)."""

from __future__ import annotations

import itertools
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import (
    NOTICE_SECRET,
    cli,
    database_env,
    free_port,
    query,
    simulator_process,
    start_process,
    stop_process,
    wait_http,
)

TERMINAL = {"succeeded", "failed", "canceled", "timeout"}


def gateway_env(data_dir: Path, sim_url: str, **extra: str) -> dict[str, str]:
    return {
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_COZE_BASE_URL": sim_url,
        "GATEWAY_COZE_API_TOKEN": "pat_simulator",
        "GATEWAY_PROVIDER_CALLBACK_SECRET": NOTICE_SECRET,
        "GATEWAY_LEASE_SECONDS": "2",
        "GATEWAY_SWEEP_SECONDS": "0.5",
        "GATEWAY_RUNNER_POLL_SECONDS": "0.1",
        "GATEWAY_AUTH_CACHE_SECONDS": "0",
        # The simulator is a Coze on this machine: it may read its own loopback image URLs.
        "GATEWAY_COZE_ALLOW_INTERNAL_IMAGE_URLS": "true",
        **database_env(),
        **extra,
    }


def new_token(env: dict[str, str]) -> dict[str, str]:
    created = cli("token", "create", "--name", "restart", "--json", env=env)
    assert created.returncode == 0, created.stderr
    return {"Authorization": f"Bearer {json.loads(created.stdout)['token']}"}


def all_tasks(url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    return list(httpx.get(f"{url}/api/ability_tasks?limit=100", headers=headers).json()["items"])


def wait_all_terminal(
    url: str, headers: dict[str, str], count: int, timeout: float = 60
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        items = all_tasks(url, headers)
        if len(items) == count and all(t["status"] in TERMINAL for t in items):
            return items
        assert time.monotonic() < deadline, [(t["id"], t["status"]) for t in items]
        time.sleep(0.2)


def test_sigkill_mid_work_loses_no_task(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    notify = [
        "--notify-url",
        f"{url}/api/provider_callbacks/coze",
        "--notify-secret",
        NOTICE_SECRET,
    ]
    with simulator_process("--latency-ms", "1500", "--job-seconds", "2", *notify) as sim:
        env = gateway_env(tmp_path, sim, GATEWAY_RUNNER_CONCURRENCY="2")
        headers = new_token(env)
        image = f"{sim}/files/samples/square.png"
        proc = start_process(["serve", "--port", str(port)], env, tmp_path / "first.log")
        wait_http(f"{url}/healthz", proc=proc)

        # Long generations: they reach the external-job wait (polling / notice) quickly.
        for _ in range(2):
            r = httpx.post(
                f"{url}/api/abilities/ability_coze_image_gen_8step/invoke",
                json={"inputs": {"url": image, "width": 96, "height": 64, "prompt": "山水"}},
                headers=headers,
            )
            assert r.status_code == 202, r.text
        time.sleep(2.0)  # both are now waiting on their external jobs
        # Background prompt extractions: 2 runner slots, so some are mid-call, some queued.
        for _ in range(4):
            r = httpx.post(
                f"{url}/api/abilities/ability_coze_prompt_extract/invoke",
                json={"inputs": {"url": image}},
                headers={**headers, "Prefer": "respond-async"},
            )
            assert r.status_code == 202, r.text
        # A synchronous invoke whose caller is waiting while the process dies mid-call.
        answered: list[int] = []

        def sync_call() -> None:
            try:
                answered.append(
                    httpx.post(
                        f"{url}/api/abilities/ability_coze_tagging_small/invoke",
                        json={"inputs": {"url": image}},
                        headers=headers,
                        timeout=30,
                    ).status_code
                )
            except httpx.TransportError:
                answered.append(-1)

        caller = threading.Thread(target=sync_call)
        caller.start()
        time.sleep(0.6)
        before = {t["id"]: t["status"] for t in all_tasks(url, headers)}
        assert len(before) == 7
        assert "queued" in before.values()
        assert "running" in before.values()
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        caller.join(10)
        assert answered == [-1]  # the caller saw the connection die

        proc = start_process(["serve", "--port", str(port)], env, tmp_path / "second.log")
        try:
            wait_http(f"{url}/healthz", proc=proc)
            items = wait_all_terminal(url, headers, 7)
        finally:
            stop_process(proc)
    assert {t["id"] for t in items} == set(before)
    assert all(t["status"] == "succeeded" for t in items), [
        (t["id"], t["status"], t["errorPayload"]) for t in items
    ]
    by_ability: dict[str, list[dict[str, Any]]] = {}
    for t in items:
        by_ability.setdefault(t["abilityId"], []).append(t)
    for t in by_ability["ability_coze_image_gen_8step"]:
        assert len(t["resultPayload"]["images"]) == 4
    for t in by_ability["ability_coze_prompt_extract"] + by_ability["ability_coze_tagging_small"]:
        assert t["resultPayload"]["texts"]


def test_two_runners_never_run_the_same_job(tmp_path: Path) -> None:
    with simulator_process("--latency-ms", "100") as sim:
        env = gateway_env(tmp_path, sim, GATEWAY_RUNNER_ENABLED="false")
        headers = new_token(env)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        worker_env = {**env, "GATEWAY_RUNNER_CONCURRENCY": "4"}
        procs = [
            start_process(["serve", "--port", str(port)], env, tmp_path / "api.log"),
            start_process(["worker"], worker_env, tmp_path / "worker-1.log"),
            start_process(["worker"], worker_env, tmp_path / "worker-2.log"),
        ]
        try:
            wait_http(f"{url}/healthz", proc=procs[0])
            image = f"{sim}/files/samples/square.png"
            for i in range(40):
                r = httpx.post(
                    f"{url}/api/abilities/ability_coze_prompt_extract/invoke",
                    json={"inputs": {"url": image, "shuru": f"第{i}张"}},
                    headers={**headers, "Prefer": "respond-async"},
                )
                assert r.status_code == 202
            items = wait_all_terminal(url, headers, 40)
        finally:
            for proc in procs:
                stop_process(proc)
    assert all(t["status"] == "succeeded" for t in items)
    url = env.get("GATEWAY_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    runs = query(
        url,
        "SELECT task_id, COUNT(*), MIN(node) FROM call_logs "
        "WHERE operation = 'workflow.run' GROUP BY task_id",
    )
    nodes = {row[0] for row in query(url, "SELECT DISTINCT node FROM call_logs")}
    assert len(runs) == 40
    assert all(count == 1 for _, count, _ in runs)  # no job ran twice
    assert len(nodes) == 2  # and both runners took a share


def _callback_gateway(
    tmp_path: Path, sim: str, name: str, **extra: str
) -> tuple[dict[str, str], int]:
    env = gateway_env(tmp_path / name, sim, GATEWAY_EGRESS_ALLOW="127.0.0.0/8", **extra)
    (tmp_path / name).mkdir()
    return env, free_port()


def test_sigkill_during_a_delivery_and_during_a_retry_wait_loses_no_callback(
    tmp_path: Path,
) -> None:
    from tests.support import Receiver

    slow_first = [(200, {"code": 0}, 5.0)]  # the first attempt hangs while the gateway dies
    fail_first = [(500, {"code": 1}, 0.0)]  # the first attempt fails; the retry waits 3 s
    with (
        simulator_process() as sim,
        Receiver(script=slow_first) as during_delivery,
        Receiver(script=fail_first) as during_wait,
    ):
        env, port = _callback_gateway(
            tmp_path, sim, "gw", GATEWAY_CALLBACK_RETRY_SCHEDULE="3,3,3,3,3"
        )
        url = f"http://127.0.0.1:{port}"
        headers = new_token(env)
        image = f"{sim}/files/samples/square.png"
        proc = start_process(["serve", "--port", str(port)], env, tmp_path / "gw" / "first.log")
        wait_http(f"{url}/healthz", proc=proc)
        for receiver in (during_delivery, during_wait):
            r = httpx.post(
                f"{url}/api/abilities/ability_coze_prompt_extract/invoke",
                json={"inputs": {"url": image}, "callbackUrl": receiver.url},
                headers=headers,
            )
            assert r.status_code == 200, r.text
        during_delivery.wait_for(1)
        during_wait.wait_for(1)
        time.sleep(0.3)  # the failed attempt is recorded, its retry scheduled 3 s later
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

        proc = start_process(["serve", "--port", str(port)], env, tmp_path / "gw" / "second.log")
        try:
            wait_http(f"{url}/healthz", proc=proc)
            first = during_delivery.wait_for(2, timeout=30)
            second = during_wait.wait_for(2, timeout=30)
        finally:
            stop_process(proc)
    for requests in (first, second):
        ids = {r["headers"]["webhook-id"] for r in requests}  # type: ignore[index]
        assert len(ids) == 1  # the same webhook-id after the restart
    # The retry kept its schedule: not earlier than 3 s after the failed attempt.
    assert second[1]["time"] - second[0]["time"] >= 3.0  # type: ignore[operator]


def test_two_nodes_one_killed_the_other_finishes_every_task_and_callback(
    tmp_path: Path,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from tests.support import Receiver

    port_a, port_b = free_port(), free_port()
    with (
        simulator_process("--latency-ms", "400", "--job-seconds", "1") as sim,
        Receiver() as receiver,
    ):
        env = gateway_env(tmp_path, sim, GATEWAY_EGRESS_ALLOW="127.0.0.0/8")
        headers = new_token(env)
        image = f"{sim}/files/samples/square.png"
        node_a = start_process(["serve", "--port", str(port_a)], env, tmp_path / "a.log")
        node_b = start_process(["serve", "--port", str(port_b)], env, tmp_path / "b.log")
        urls = [f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"]
        try:
            wait_http(f"{urls[0]}/healthz", proc=node_a)
            wait_http(f"{urls[1]}/healthz", proc=node_b)

            def invoke(n: int) -> int:
                url = urls[n % 2]
                if n % 3 == 0:
                    ability = "ability_coze_image_gen_4step"
                    inputs = {"url": image, "width": 32, "height": 32, "prompt": f"第{n}"}
                else:
                    ability = "ability_coze_prompt_extract"
                    inputs = {"url": image, "shuru": f"第{n}"}
                try:
                    return httpx.post(
                        f"{url}/api/abilities/{ability}/invoke",
                        json={"inputs": inputs, "callbackUrl": receiver.url},
                        headers=headers,
                        timeout=30,
                    ).status_code
                except httpx.TransportError:
                    return -1  # its node died under it

            with ThreadPoolExecutor(12) as pool:
                calls = [pool.submit(invoke, n) for n in range(24)]
                time.sleep(0.25)  # node A is now mid-call on several tasks
                node_a.send_signal(signal.SIGKILL)
                node_a.wait(10)
                answers = [c.result() for c in calls]
            items = wait_all_terminal(urls[1], headers, len(all_tasks(urls[1], headers)))
            callbacks = receiver.wait_for(len(items), timeout=60)
        finally:
            stop_process(node_b)
            stop_process(node_a)
    assert -1 in answers  # some callers were cut off by the kill
    assert len(items) >= 12  # every invoke sent to the surviving node made a task
    assert all(t["status"] == "succeeded" for t in items), [(t["id"], t["status"]) for t in items]
    # Every task called back; a repeat (after the crash) carries the same webhook-id.
    ids_by_task: dict[str, set[str]] = {}
    for request in callbacks:
        body = json.loads(str(request["body"]))
        ids_by_task.setdefault(body["taskId"], set()).add(request["headers"]["webhook-id"])  # type: ignore[index]
    assert set(ids_by_task) == {t["id"] for t in items}
    assert all(len(ids) == 1 for ids in ids_by_task.values())
    # No job ran on both nodes at once: per task, the recorded runs never overlap in time.
    url = env.get("GATEWAY_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    rows = query(
        url,
        "SELECT task_id, node, created_at - duration_ms, created_at FROM call_logs "
        "WHERE operation = 'workflow.run' AND workflow_id <> '7598100000000000001'",
    )
    runs: dict[str, list[tuple[int, int]]] = {}
    for task_id, _node, start, end in rows:
        runs.setdefault(str(task_id), []).append((int(start), int(end)))  # type: ignore[call-overload]
    for spans in runs.values():
        spans.sort()
        for (_, first_end), (second_start, _) in itertools.pairwise(spans):
            assert second_start >= first_end - 5  # ms of clock granularity
