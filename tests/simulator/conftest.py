"""Fixtures that run the Coze simulator as a real process on loopback, the way the demo does."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import httpx
import pytest

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
