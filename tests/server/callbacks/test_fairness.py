"""One token's slow callback receivers cannot delay another token's tasks or callbacks.

A tarpit receiver accepts every connection and never answers: each attempt to it holds a
delivery for the whole attempt timeout. The tests assert order, not time: what must happen
before the tarpit lets go of any connection (the gateway gives up on an attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from pathlib import Path

import httpx

from ability_gateway.server.auth.service import create_token
from tests.server.conftest import Live, LiveFactory
from tests.support import (
    Receiver,
    cli,
    database_env,
    free_port,
    query,
    simulator_process,
    start_process,
    stop_process,
    wait_http,
)

PROMPT = "ability_coze_prompt_extract"


class Tarpit:
    """A loopback callback receiver that accepts, reads, and never answers until released.

    It records when each connection opened and when it ended (the gateway gave up on the
    attempt, or :meth:`release` let it go), and the most connections it held at once.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/callback"
        self.opened: list[float] = []
        self.closed: list[float] = []
        self.holding = 0
        self.max_holding = 0
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self._done: asyncio.Event | None = None

    def __enter__(self) -> Tarpit:
        self._thread.start()
        assert self._ready.wait(10), "tarpit did not start"
        return self

    def __exit__(self, *_: object) -> None:
        self.release()
        assert self._loop is not None
        assert self._done is not None
        self._loop.call_soon_threadsafe(self._done.set)
        self._thread.join(10)

    def release(self) -> None:
        """Let go of every connection held."""
        assert self._loop is not None
        assert self._release is not None
        self._loop.call_soon_threadsafe(self._release.set)

    def first_let_go(self) -> float | None:
        with self._lock:
            return min(self.closed) if self.closed else None

    def _serve(self) -> None:
        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with self._lock:
                self.opened.append(time.monotonic())
                self.holding += 1
                self.max_holding = max(self.max_holding, self.holding)
            assert self._release is not None
            released = asyncio.ensure_future(self._release.wait())
            try:
                while True:
                    read = asyncio.ensure_future(reader.read(65536))
                    await asyncio.wait({read, released}, return_when=asyncio.FIRST_COMPLETED)
                    if released.done() or not read.result():
                        read.cancel()
                        break  # released, or the client closed (gave up)
            except ConnectionError:
                pass
            finally:
                released.cancel()
                with self._lock:
                    self.closed.append(time.monotonic())
                    self.holding -= 1
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._release = asyncio.Event()
            self._done = asyncio.Event()
            server = await asyncio.start_server(hold, "127.0.0.1", self.port)
            self._ready.set()
            await self._done.wait()
            server.close()

        asyncio.run(main())

    def wait_opened(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.opened) < count:
            assert time.monotonic() < deadline, f"{len(self.opened)} of {count} connections came"
            time.sleep(0.02)


async def _headers_of(gw: Live, name: str) -> dict[str, str]:
    created = await create_token(gw.state.db, name)
    return {"Authorization": f"Bearer {created.token}"}


async def _invoke_async(
    gw: Live, headers: dict[str, str], callback_url: str, n: int
) -> httpx.Response:
    image = f"{gw.sim_url}/files/samples/square.png"
    return await gw.client.post(
        f"/api/abilities/{PROMPT}/invoke",
        json={"inputs": {"url": image, "shuru": f"第{n}张"}, "callbackUrl": callback_url},
        headers={**headers, "Prefer": "respond-async"},
    )


async def _all_succeeded(gw: Live, headers: dict[str, str], count: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        listed = await gw.client.get("/api/ability_tasks?limit=100", headers=headers)
        items = listed.json()["items"]
        if len(items) == count and all(t["status"] == "succeeded" for t in items):
            return
        assert loop.time() < deadline, [t["status"] for t in items]
        await asyncio.sleep(0.05)


async def test_a_tarpit_receiver_of_one_token_delays_neither_the_tasks_nor_the_callbacks_of_another(
    live: LiveFactory,
) -> None:
    with Tarpit() as tarpit, Receiver() as receiver:
        async with live(
            egress_allow="127.0.0.0/8",
            runner_concurrency=8,
            runner_delivery_concurrency=4,
            callback_token_concurrency=2,
            callback_timeout_seconds=2.0,
            callback_retry_schedule="60",
        ) as gw:
            x = await _headers_of(gw, "x")
            y = await _headers_of(gw, "y")
            for n in range(20):
                assert (await _invoke_async(gw, x, tarpit.url, n)).status_code == 202
            await _all_succeeded(gw, x, 20)
            await asyncio.to_thread(tarpit.wait_opened, 2)  # X's deliveries are stuck now

            answer = await _invoke_async(gw, y, receiver.url, 0)
            assert answer.status_code == 202
            gw.headers = y
            task, _ = await gw.wait(answer.json()["metadata"]["taskId"])
            ended = time.monotonic()
            [callback] = await receiver.wait(1)
            let_go = tarpit.first_let_go()
    assert task["status"] == "succeeded"
    # Y's task ended and its callback arrived while the tarpit still held every connection.
    assert let_go is None or ended < let_go, f"Y's task ended {ended - let_go:.2f} s too late"
    arrived = float(callback["time"])  # type: ignore[arg-type]
    assert let_go is None or arrived < let_go, f"Y's callback came {arrived - let_go:.2f} s late"


def test_the_per_token_cap_of_deliveries_holds_across_two_nodes(tmp_path: Path) -> None:
    # Two delivery slots per node, at most three of one token's deliveries in flight: the
    # tarpit can only ever hold three at once if both nodes send and the cap spans them.
    port_a, port_b = free_port(), free_port()
    with simulator_process() as sim, Tarpit() as tarpit:
        env = {
            "GATEWAY_DATA_DIR": str(tmp_path),
            "GATEWAY_COZE_BASE_URL": sim,
            "GATEWAY_COZE_API_TOKEN": "pat_simulator",
            "GATEWAY_EGRESS_ALLOW": "127.0.0.0/8",
            "GATEWAY_RUNNER_POLL_SECONDS": "0.05",
            "GATEWAY_RUNNER_DELIVERY_CONCURRENCY": "2",
            "GATEWAY_CALLBACK_TOKEN_CONCURRENCY": "3",
            "GATEWAY_CALLBACK_TIMEOUT_SECONDS": "2",
            "GATEWAY_CALLBACK_RETRY_SCHEDULE": "60",
            "GATEWAY_SHUTDOWN_GRACE_SECONDS": "1",
            **database_env(),
        }
        created = cli("token", "create", "--name", "x", "--json", env=env)
        assert created.returncode == 0, created.stderr
        headers = {"Authorization": f"Bearer {json.loads(created.stdout)['token']}"}
        nodes = [
            start_process(["serve", "--port", str(port_a)], env, tmp_path / "a.log"),
            start_process(["serve", "--port", str(port_b)], env, tmp_path / "b.log"),
        ]
        urls = [f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"]
        try:
            for url, node in zip(urls, nodes, strict=True):
                wait_http(f"{url}/healthz", proc=node)
            image = f"{sim}/files/samples/square.png"
            for n in range(20):
                r = httpx.post(
                    f"{urls[n % 2]}/api/abilities/{PROMPT}/invoke",
                    json={"inputs": {"url": image, "shuru": f"第{n}张"}, "callbackUrl": tarpit.url},
                    headers={**headers, "Prefer": "respond-async"},
                )
                assert r.status_code == 202, r.text
            tarpit.wait_opened(9)  # three rounds of attempts
            most = tarpit.max_holding
        finally:
            for node in nodes:
                stop_process(node)
    url = env.get("GATEWAY_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}"
    senders = {row[0] for row in query(url, "SELECT DISTINCT node FROM delivery_attempts")}
    assert most == 3, f"the tarpit held {most} of the token's deliveries at once"
    assert len(senders) == 2  # both nodes sent some
