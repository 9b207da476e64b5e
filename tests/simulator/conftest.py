"""Fixtures that run the Coze simulator as a real process on loopback, the way the demo does."""

from __future__ import annotations

import asyncio
import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field

import httpx
import pytest
from aiohttp import web

TOKEN = "pat_simulator"
SAMPLE_LANDSCAPE = "/files/samples/landscape.png"  # 1024x768
SAMPLE_SQUARE = "/files/samples/square.png"  # 512x512

WF_PROMPT = "7597535455856295936"
WF_PATTERN = "7597530887256801280"
WF_GEN_4STEP = "7597701996124045312"
WF_GEN_8STEP = "7597702948247830528"
WF_OUTPAINT = "7597723984687267840"
WF_UPSCALE = "7597760543788630016"
WF_TAG_SMALL = "7597767702970630144"
WF_TAG_LARGE = "7598080013539213312"
WF_JOB_QUERY = "7598100000000000001"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Simulator:
    """A running ``ability-gateway coze-sim`` process."""

    url: str
    process: subprocess.Popen[bytes]

    def file_url(self, path: str) -> str:
        return self.url + path


@contextmanager
def run_simulator(*args: str, ready_timeout: float = 30.0) -> Iterator[Simulator]:
    """Start ``python -m ability_gateway coze-sim`` with ``args``; stop it on exit."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ability_gateway", "coze-sim", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"simulator exited early: {process.stderr.read().decode()}")  # type: ignore[union-attr]
            try:
                if httpx.get(url + "/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("simulator did not become ready")
            time.sleep(0.05)
        yield Simulator(url=url, process=process)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="session")
def sim() -> Iterator[Simulator]:
    """The default simulator: token pat_simulator, no latency, no faults."""
    with run_simulator() as simulator:
        yield simulator


@pytest.fixture(scope="session")
def start_simulator() -> Iterator[Callable[..., Simulator]]:
    """Start extra simulators with given CLI args (e.g. ``"--fail-rate", "1"``), one per args."""
    running: dict[tuple[str, ...], Simulator] = {}
    with ExitStack() as stack:

        def start(*args: str) -> Simulator:
            if args not in running:
                running[args] = stack.enter_context(run_simulator(*args))
            return running[args]

        yield start


class _ImageHost(http.server.ThreadingHTTPServer):
    files: dict[str, tuple[str, bytes]]


class _ImageHandler(http.server.BaseHTTPRequestHandler):
    server: _ImageHost

    def do_GET(self) -> None:
        found = self.server.files.get(self.path)
        if found is None:
            self.send_error(404)
            return
        content_type, body = found
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class ImageHost:
    """A third-party HTTP server on loopback; put files in ``files`` (path -> (type, bytes))."""

    url: str
    files: dict[str, tuple[str, bytes]]


@pytest.fixture(scope="session")
def image_host() -> Iterator[ImageHost]:
    server = _ImageHost(("127.0.0.1", 0), _ImageHandler)
    server.files = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ImageHost(url=f"http://127.0.0.1:{server.server_address[1]}", files=server.files)
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Notice:
    """One POST the receiver got."""

    path: str
    headers: dict[str, str]
    """Header names lower-cased."""
    body: bytes
    status: int
    """What the receiver answered."""


@dataclass
class NoticeReceiver:
    """A loopback aiohttp server (own thread and loop) that records every POST it gets.

    ``failures[prefix]`` is a list of statuses to answer, in order, to POSTs whose path starts with
    ``prefix`` before answering 200 again.
    """

    url: str = ""
    notices: list[Notice] = field(default_factory=list)
    failures: dict[str, list[int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def under(self, prefix: str) -> list[Notice]:
        with self.lock:
            return [notice for notice in self.notices if notice.path.startswith(prefix)]

    def wait_for(self, prefix: str, count: int, timeout: float = 20.0) -> list[Notice]:
        """The first ``count`` notices under ``prefix``, once that many arrived (or fail)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.under(prefix)
            if len(got) >= count:
                return got
            assert time.monotonic() < deadline, f"{len(got)} of {count} notices to {prefix}"
            time.sleep(0.02)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self.lock:
            status = 200
            for prefix, queued in self.failures.items():
                if request.path.startswith(prefix) and queued:
                    status = queued.pop(0)
            self.notices.append(
                Notice(
                    path=request.path,
                    headers={name.lower(): value for name, value in request.headers.items()},
                    body=body,
                    status=status,
                )
            )
        return web.Response(status=status, text="ok" if status < 300 else "nope")


@pytest.fixture(scope="session")
def notice_receiver() -> Iterator[NoticeReceiver]:
    receiver = NoticeReceiver()
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None)

    async def start() -> None:
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        receiver.url = f"http://{host}:{port}"

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield receiver
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
