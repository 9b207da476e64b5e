"""Schemathesis over the published OpenAPI document, against a real gateway process.

Bounded by examples, not by time (a fixed seed, deterministic generation): no answer may be
a 500, and every answer's status, content type and body must be what its route documents
(a 502/504 from a failed workflow is documented on invoke, a 503 wherever the database or a
configuration can be missing).
Fuzzed URLs never leave loopback: callback and image URLs are pointed at loopback
servers before each request (the gateway would otherwise resolve whatever names the
fuzzer makes up).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import LiveGateway
from tests.support import NOTICE_SECRET, Receiver, cli, database_env, gateway_process

MAX_EXAMPLES = 100
SEED = 20261202

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
    }
)


@pytest.fixture(scope="module")
def fuzz_gateway(
    live_gateway: LiveGateway, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveGateway, str]]:
    """A gateway of its own (the fuzzer's tasks must not crowd other tests), a receiver."""
    data_dir = tmp_path_factory.mktemp("fuzz")
    env = {
        **{k: v for k, v in live_gateway.env.items() if k != "GATEWAY_DATABASE_URL"},
        **database_env(),  # a fresh database on PostgreSQL
        "GATEWAY_DATA_DIR": str(data_dir),
        "GATEWAY_PROVIDER_CALLBACK_SECRET": NOTICE_SECRET,
    }
    created = cli("token", "create", "--name", "fuzz", "--json", env=env)
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]
    with Receiver() as receiver, gateway_process(env, data_dir) as url:
        yield LiveGateway(url, token, env), receiver.url


def _published_document() -> dict[str, Any]:
    """What ``/openapi.json`` serves (the same document the snapshot test pins)."""
    from ability_gateway.server.app import create_app
    from ability_gateway.server.config import Settings

    return create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]


schema = schemathesis.openapi.from_dict(_published_document(), config=CONFIG)


def _loopback_only(body: Any, receiver: str, image: str) -> Any:
    """Point every URL the fuzzer put in a body at a loopback server."""
    if not isinstance(body, dict):
        return body
    if isinstance(body.get("callbackUrl"), str):
        body["callbackUrl"] = receiver
    if isinstance(body.get("imageUrl"), str):
        body["imageUrl"] = image
    inputs = body.get("inputs")
    if isinstance(inputs, dict):
        for name in ("url", "Url"):
            if isinstance(inputs.get(name), str):
                inputs[name] = image
    return body


@schema.parametrize()
def test_every_answer_is_documented_and_none_is_a_server_error(
    case: Any, fuzz_gateway: tuple[LiveGateway, str], sim_url: str
) -> None:
    gateway, receiver = fuzz_gateway
    case.body = _loopback_only(case.body, receiver, f"{sim_url}/files/samples/square.png")
    response = case.call(
        base_url=gateway.url,
        headers={"Authorization": f"Bearer {gateway.token}", "Prefer": "wait=5"},
        timeout=30,
    )
    assert response.status_code != 500, (case.method, case.path, response.text)
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )
