"""Executors: the YAML file, weighted choice, failover, circuit breaker, concurrency caps,
the admin view."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from ability_gateway.server.auth.service import create_token
from ability_gateway.server.executors.health import CircuitBreaker
from ability_gateway.server.executors.registry import ExecutorRegistry
from ability_gateway.server.models import call_logs
from tests.conftest import make_settings
from tests.server.conftest import LiveFactory
from tests.support import free_port


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "executors.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_file_and_the_default_executor(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
executors:
  - {id: a, baseUrl: "http://a.example", auth: {type: token, token: pat_a}, weight: 2, qps: 5}
  - {id: b, baseUrl: "http://b.example", auth: {type: token, tokenEnv: B_TOKEN}, maxConcurrency: 3}
""",
    )
    settings = make_settings(tmp_path, "http://sim.example", executors_file=path)
    registry = ExecutorRegistry.from_settings(settings, environ={"B_TOKEN": "pat_b"})
    assert [(e.id, e.weight, e.max_concurrency, e.qps) for e in registry.all()] == [
        ("a", 2.0, None, 5.0),
        ("b", 1.0, 3, None),
        ("default", 1.0, None, None),
    ]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("executors: [{id: a, auth: {type: token}}]", ValueError),
        (
            "executors: [{id: a, auth: {type: token, token: x}},"
            " {id: a, auth: {type: token, token: y}}]",
            ValueError,
        ),
        ("executors: [{id: a, auth: {type: magic}}]", ValidationError),
        ("executors: [{id: 'bad id', auth: {type: token, token: x}}]", ValidationError),
    ],
)
def test_bad_files_are_refused_at_start(tmp_path: Path, text: str, error: type[Exception]) -> None:
    settings = make_settings(tmp_path, "http://sim.example", executors_file=write(tmp_path, text))
    with pytest.raises(error):
        ExecutorRegistry.from_settings(settings, environ={})


def test_the_weighted_choice_skips_open_breakers(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
executors:
  - {id: heavy, auth: {type: token, token: x}, weight: 9}
  - {id: light, auth: {type: token, token: y}, weight: 1}
""",
    )
    settings = make_settings(
        tmp_path, "http://sim.example", executors_file=path, coze_api_token=None
    )
    registry = ExecutorRegistry.from_settings(settings, environ={})
    picks = [registry.choose(None).id for _ in range(400)]
    assert 300 < picks.count("heavy") < 400
    heavy = registry.get("heavy")
    assert heavy is not None
    for _ in range(5):
        heavy.breaker.record(False, "no answer")
    assert {registry.choose(None).id for _ in range(50)} == {"light"}
    assert registry.choose("heavy").id == "heavy"  # an explicit pick is honoured
    heavy.breaker.cooldown = 0.0  # the cooldown is over: half-open, one probe
    probes = [registry.choose(None).id for _ in range(200)]
    assert probes.count("heavy") == 1


def test_the_breaker_opens_then_probes_half_open() -> None:
    breaker = CircuitBreaker(threshold=3, cooldown=0.05)
    for _ in range(3):
        breaker.record(False, "HTTP 503")
    assert breaker.state == "open"
    assert not breaker.available()
    import time

    time.sleep(0.06)
    assert breaker.state == "half_open"
    assert breaker.available()
    breaker.begin()
    assert not breaker.available()  # one probe at a time
    breaker.record(True)
    assert breaker.state == "closed"
    assert breaker.reason is None


def failover_file(tmp_path: Path, sim_url: str, dead: str) -> Path:
    return write(
        tmp_path,
        f"""
executors:
  - {{id: dead, baseUrl: "{dead}", auth: {{type: token, token: pat_simulator}}, weight: 1000}}
  - {{id: sim, baseUrl: "{sim_url}", auth: {{type: token, token: pat_simulator}}, weight: 1}}
""",
    )


async def test_an_unreachable_account_fails_over_and_opens_its_breaker(
    live: LiveFactory, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with live(
        coze_max_retries=0,
        coze_api_token=None,
        executors_file=lambda sim: failover_file(tmp_path, sim, dead),
    ) as gw:
        image = f"{gw.sim_url}/files/samples/square.png"
        answers = [
            await gw.invoke(
                "ability_coze_upscale_8k", {"inputs": {"url": image, "bianchang": 64 + n}}
            )
            for n in range(6)
        ]
        assert [a.status_code for a in answers] == [200] * 6
        async with gw.state.db.read() as conn:
            rows = (
                await conn.execute(
                    select(call_logs.c.executor_id, call_logs.c.http_status).where(
                        call_logs.c.operation == "workflow.run"
                    )
                )
            ).all()
        assert ("dead", None) in rows  # tried, no answer
        assert rows.count(("sim", 200)) == 6  # every task ran on the healthy account
        admin = await create_token(gw.state.db, "admin", admin=True)
        view = await gw.client.get(
            "/api/admin/executors", headers={"Authorization": f"Bearer {admin.token}"}
        )
        assert view.status_code == 200
        states = {e["id"]: e for e in view.json()["items"]}
        assert states["dead"]["state"] == "open"
        assert "cannot connect" in states["dead"]["reason"]
        assert states["sim"]["state"] == "closed"
        forbidden = await gw.client.get("/api/admin/executors", headers=gw.headers)
        assert forbidden.status_code == 403
        assert forbidden.json()["code"] == 403


async def test_the_concurrency_cap_holds_and_tasks_wait(live: LiveFactory, tmp_path: Path) -> None:
    def capped(sim: str) -> Path:
        return write(
            tmp_path,
            f"""
executors:
  - {{id: capped, baseUrl: "{sim}", auth: {{type: token, token: pat_simulator}}, maxConcurrency: 1}}
""",
        )

    async with live("--latency-ms", "300", coze_api_token=None, executors_file=capped) as gw:
        image = f"{gw.sim_url}/files/samples/square.png"
        started = await asyncio.gather(
            *(
                gw.invoke(
                    "ability_coze_upscale_8k",
                    {"inputs": {"url": image, "bianchang": 100 + n}},
                    Prefer="respond-async",
                )
                for n in range(4)
            )
        )
        for response in started:
            task, _ = await gw.wait(response.json()["metadata"]["taskId"])
            assert task["status"] == "succeeded"
        async with gw.state.db.read() as conn:
            spans = sorted(
                (int(r.created_at) - int(r.duration_ms), int(r.created_at))
                for r in (
                    await conn.execute(
                        select(call_logs.c.created_at, call_logs.c.duration_ms).where(
                            call_logs.c.operation == "workflow.run"
                        )
                    )
                ).all()
            )
    assert len(spans) == 4
    for (_, first_end), (second_start, _) in itertools.pairwise(spans):
        assert second_start >= first_end - 5  # never two calls at once on this account


async def test_an_oauth_jwt_service_app_executor(live: LiveFactory, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = tmp_path / "app.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / "app.pub.pem"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )

    def jwt_file(sim: str) -> Path:
        return write(
            tmp_path,
            f"""
executors:
  - id: jwt-app
    baseUrl: "{sim}"
    auth: {{type: jwt, appId: "1180001", keyId: "kid-1", privateKeyFile: "{private}"}}
""",
        )

    async with live(
        "--oauth-app", f"1180001:kid-1:{public}", coze_api_token=None, executors_file=jwt_file
    ) as gw:
        image = f"{gw.sim_url}/files/samples/square.png"
        first = await gw.invoke(
            "ability_coze_upscale_8k", {"inputs": {"url": image, "bianchang": 80}}
        )
        executor = gw.state.executors.get("jwt-app")
        assert executor is not None
        token = executor.auth._token  # type: ignore[attr-defined]
        second = await gw.invoke(
            "ability_coze_upscale_8k", {"inputs": {"url": image, "bianchang": 81}}
        )
        assert first.status_code == second.status_code == 200, first.text
        assert token is not None
        assert token.startswith("czs_")
        assert executor.auth._token == token  # type: ignore[attr-defined]  # reused, not re-minted
