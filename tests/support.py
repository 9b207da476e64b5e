"""Helpers for tests: free ports and real processes on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

LOOPBACK_GUARD_DIR = Path(__file__).parent / "loopback_guard"


def guard_child_processes(record_path: str) -> None:
    """Every Python process started from here on runs tests/loopback_guard (its
    ``sitecustomize``): a look-up or connection outside loopback is refused and recorded in
    ``record_path``. Set in ``os.environ``, which every helper below passes on."""
    from tests.loopback_guard.loopback_guard import RECORD_ENV

    paths = [str(LOOPBACK_GUARD_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    os.environ[RECORD_ENV] = record_path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``ability-gateway`` entry point."""
    return subprocess.run(
        [sys.executable, "-m", "ability_gateway", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def simulator_process(*extra: str) -> Iterator[str]:
    """A real Coze simulator process; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ability_gateway", "coze-sim", "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc=proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def start_process(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """``ability-gateway ARGS`` as a real process, its output in ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "ability_gateway", *args],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def gateway_process(env: dict[str, str], data_dir: Path, port: int | None = None) -> Iterator[str]:
    """A real gateway process (``ability-gateway serve``); yields its base URL."""
    port = port or free_port()
    proc = start_process(["serve", "--port", str(port)], env, data_dir / f"gateway-{port}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", proc=proc)
        yield url
    finally:
        stop_process(proc)


NOTICE_SECRET = "whsec_" + "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # test-only key


class Receiver:
    """A loopback HTTP receiver for callbacks, on its own thread and event loop.

    ``script`` says how to answer, in order: (status, body, delay seconds); after the
    script runs out, ``default`` answers. Every request is recorded with its arrival time.
    """

    def __init__(
        self,
        script: list[tuple[int, object, float]] | None = None,
        default: tuple[int, object, float] = (200, {"code": 0, "message": "success"}, 0.0),
    ) -> None:
        import threading

        self.script = list(script or [])
        self.default = default
        self.requests: list[dict[str, object]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/callback"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._stop: object = None

    def __enter__(self) -> Receiver:
        self._thread.start()
        assert self._ready.wait(10), "receiver did not start"
        return self

    def __exit__(self, *_: object) -> None:

        loop, stop = self._stop  # type: ignore[misc]
        loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        import asyncio
        import json
        import time as _time

        from aiohttp import web

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            self.requests.append(
                {
                    "time": _time.monotonic(),
                    "path": request.path,
                    "headers": dict(request.headers),
                    "body": body.decode(),
                }
            )
            status, answer, delay = self.script.pop(0) if self.script else self.default
            if delay:
                await asyncio.sleep(delay)
            if 300 <= status < 400:
                raise web.HTTPFound(str(answer))
            text = answer if isinstance(answer, str) else json.dumps(answer)
            return web.Response(status=status, text=text, content_type="application/json")

        async def main() -> None:
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", handle)
            runner = web.AppRunner(app)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port).start()
            stop = asyncio.Event()
            self._stop = (asyncio.get_running_loop(), stop)
            self._ready.set()
            await stop.wait()
            await runner.cleanup()

        asyncio.run(main())

    def wait_for(self, count: int, timeout: float = 30.0) -> list[dict[str, object]]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} callbacks came"
            time.sleep(0.02)
        return self.requests

    async def wait(self, count: int, timeout: float = 30.0) -> list[dict[str, object]]:
        """``wait_for`` for async tests (whose event loop must keep running)."""
        import asyncio

        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} callbacks came"
            await asyncio.sleep(0.02)
        return self.requests


# --- the database the tests run on ---------------------------------------------------------
# `make test` runs the suite twice: on SQLite (the default) and, with
# GATEWAY_TEST_DATABASE=postgresql, on PostgreSQL (127.0.0.1:5432, trust auth): every gateway a
# test starts then gets a fresh database of its own, dropped at the end of the session.

TEST_DATABASE = os.environ.get("GATEWAY_TEST_DATABASE", "sqlite")
PG_HOST = ["-h", "127.0.0.1", "-p", "5432", "-U", "postgres"]
_created_databases: list[str] = []


def database_url() -> str | None:
    """None on SQLite (the gateway's default file under its data dir), else a new database."""
    if TEST_DATABASE != "postgresql":
        return None
    import uuid

    name = f"agw_test_{uuid.uuid4().hex[:16]}"
    subprocess.run(["createdb", *PG_HOST, name], check=True, capture_output=True, timeout=30)
    _created_databases.append(name)
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


def database_env() -> dict[str, str]:
    url = database_url()
    return {} if url is None else {"GATEWAY_DATABASE_URL": url}


def drop_test_databases() -> None:
    for name in _created_databases:
        subprocess.run(
            ["dropdb", *PG_HOST, "--if-exists", "--force", name], capture_output=True, timeout=30
        )
    _created_databases.clear()


def query(url: str, sql: str) -> list[tuple[object, ...]]:
    """Rows of ``sql`` on the database at ``url`` (SQLAlchemy async URL), from sync code."""
    import asyncio

    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> list[tuple[object, ...]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in (await conn.execute(text(sql))).all()]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def build_wheel(out: Path) -> Path:
    """The project's wheel, built offline with hatchling into ``out``."""
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from hatchling.build import build_wheel; print(build_wheel(sys.argv[1]))",
            str(out),
        ],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return out / built.stdout.strip().splitlines()[-1]


async def first_run_done(state: Any) -> None:
    """The runner's own retention job runs once at start, then hourly: wait for that first
    run (taken, and queued again), so a test that claims or deletes by hand is alone."""
    from sqlalchemy import func, select

    from ability_gateway.server.models import jobs
    from ability_gateway.server.retention.jobs import RETENTION_JOB

    ran = select(func.count()).where(
        jobs.c.kind == RETENTION_JOB, jobs.c.steps >= 1, jobs.c.state == "queued"
    )
    for _ in range(1000):
        async with state.db.read() as conn:
            if (await conn.execute(ran)).scalar_one():
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the retention job did not run at start")
