"""Shared fixtures: a real Coze simulator process, the gateway app in-process, tokens."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from ability_gateway.server.app import create_app
from ability_gateway.server.auth.service import CreatedToken, create_token
from ability_gateway.server.config import Settings
from ability_gateway.server.state import GatewayState
from tests.contract import contract_hooks
from tests.loopback_guard import loopback_guard
from tests.support import (
    cli,
    database_env,
    database_url,
    drop_test_databases,
    gateway_process,
    guard_child_processes,
    simulator_process,
)

# Tests never leave loopback: this process and every Python process it starts refuse (and
# record) a look-up or connection elsewhere; a record fails the test it appears in, and the
# session (see tests/loopback_guard/loopback_guard.py).
_LOOPBACK_RECORD_DIR = tempfile.mkdtemp(prefix="agw-loopback-")
LOOPBACK_RECORD = str(Path(_LOOPBACK_RECORD_DIR) / "outside-loopback.jsonl")


def pytest_configure(config: pytest.Config) -> None:
    loopback_guard.install(LOOPBACK_RECORD)
    guard_child_processes(LOOPBACK_RECORD)


@pytest.fixture(autouse=True)
def _stay_on_loopback() -> Iterator[None]:
    _, start = loopback_guard.read_records(LOOPBACK_RECORD)
    yield
    records, _ = loopback_guard.read_records(LOOPBACK_RECORD, start)
    if records:
        pytest.fail(
            "a test process tried to leave loopback:\n" + loopback_guard.describe(records),
            pytrace=False,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    drop_test_databases()
    records, _ = loopback_guard.read_records(LOOPBACK_RECORD)
    shutil.rmtree(_LOOPBACK_RECORD_DIR, ignore_errors=True)
    if records:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "tests tried to leave loopback:\n" + loopback_guard.describe(records)
        if reporter is not None:
            reporter.write_line(text, red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


SAMPLE_IMAGE_PATH = "/files/samples/landscape.png"


@pytest.fixture(scope="session")
def sim_url() -> Iterator[str]:
    """The Coze simulator every test shares (no latency, no faults)."""
    with simulator_process() as url:
        yield url


@pytest.fixture(scope="session")
def sample_image(sim_url: str) -> str:
    """A 1024x768 PNG served by the simulator."""
    return sim_url + SAMPLE_IMAGE_PATH


def make_settings(data_dir: Path, coze_base_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "coze_base_url": coze_base_url,
        "coze_api_token": "pat_simulator",
        "coze_retry_backoff_seconds": 0.01,
        # The simulator serves outputs on loopback: let the gateway mirror them.
        "egress_allow": "127.0.0.0/8",
        # Tests stop gateways with work in flight: don't wait 30 s for it.
        "shutdown_grace_seconds": 2.0,
        **overrides,
    }
    if "database_url" not in values:
        values["database_url"] = database_url()
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def settings(tmp_path: Path, sim_url: str) -> Settings:
    return make_settings(tmp_path, sim_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def gateway(app: FastAPI) -> GatewayState:
    state: GatewayState = app.state.gateway
    return state


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway", event_hooks=contract_hooks()
    ) as c:
        yield c


@pytest.fixture
async def token(gateway: GatewayState) -> CreatedToken:
    return await create_token(gateway.db, "tests")


@pytest.fixture
def auth(token: CreatedToken) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.token}"}


class LiveGateway:
    def __init__(self, url: str, token: str, env: dict[str, str]) -> None:
        self.url = url
        self.token = token
        self.env = env


@pytest.fixture(scope="session")
def live_gateway(sim_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveGateway]:
    """A real ``ability-gateway serve`` process on a free port, with a token made by the CLI."""
    data_dir = tmp_path_factory.mktemp("live")
    env = {
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_COZE_BASE_URL": sim_url,
        "GATEWAY_COZE_API_TOKEN": "pat_simulator",
        "GATEWAY_EGRESS_ALLOW": "127.0.0.0/8",
        **database_env(),
    }
    created = cli("token", "create", "--name", "live", "--json", env=env)
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]
    with gateway_process(env, data_dir) as url:
        yield LiveGateway(url, token, env)
