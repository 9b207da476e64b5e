"""Executors: the YAML file, weighted choice, failover, circuit breaker, concurrency caps,
the admin view."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from ability_gateway.server.auth.service import create_token
from ability_gateway.server.executors.registry import ExecutorRegistry
from ability_gateway.server.models import call_logs
from tests.conftest import make_settings
from tests.server.conftest import LiveFactory
from tests.support import free_port, start_process, stop_process, wait_http


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
    heavy.breaker.cooldown = 0.0  # the open period is over: half-open, one probe
    probes = []
    for _ in range(200):  # as invoke does: choose, then reserve the probe for a real call
        chosen = registry.choose(None)
        chosen.breaker.reserve()
        probes.append(chosen.id)
    assert probes.count("heavy") == 1


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


async def test_the_concurrency_cap_holds_for_sync_invocations_run_inline(
    live: LiveFactory, tmp_path: Path
) -> None:
    """A sync invoke takes its job's lease itself only while the executor has room; the
    others are claimed by the runner in turn, and every caller still gets its answer."""

    def capped(sim: str) -> Path:
        return write(
            tmp_path,
            f"""
executors:
  - {{id: capped, baseUrl: "{sim}", auth: {{type: token, token: pat_simulator}}, maxConcurrency: 1}}
""",
        )

    async with live("--latency-ms", "200", coze_api_token=None, executors_file=capped) as gw:
        image = f"{gw.sim_url}/files/samples/square.png"
        answers = await asyncio.gather(
            *(
                gw.invoke(
                    "ability_coze_prompt_extract",
                    {"inputs": {"url": f"{image}?n={n}"}},
                    **{"Cache-Control": "no-cache"},
                )
                for n in range(4)
            )
        )
        assert [a.status_code for a in answers] == [200] * 4
        assert all(a.json()["status"] == "succeeded" for a in answers)
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


PROMPT = "ability_coze_prompt_extract"


async def test_after_an_outage_a_cache_hit_or_a_replay_never_keeps_the_breaker_shut(
    live: LiveFactory, tmp_path: Path
) -> None:
    """The probe's slot belongs to a real Coze call: a cached invoke or an Idempotency-Key
    replay while half-open must not take it (it used to, and every later invoke got 503)."""
    port = free_port()
    coze = f"http://127.0.0.1:{port}"
    log = tmp_path / "coze.log"

    def start_coze() -> subprocess.Popen[bytes]:
        proc = start_process(["coze-sim", "--port", str(port)], {}, log)
        wait_http(f"{coze}/healthz", proc=proc)
        return proc

    account = write(
        tmp_path,
        f'executors:\n  - {{id: only, baseUrl: "{coze}",'
        " auth: {type: token, token: pat_simulator}}\n",
    )
    proc = start_coze()
    try:
        async with live(
            coze_api_token=None,
            executors_file=account,
            coze_max_retries=0,
            breaker_open_seconds=1.0,
        ) as gw:
            image = f"{gw.sim_url}/files/samples/square.png"
            cached = {"inputs": {"url": image, "shuru": "cached"}}
            primed = await gw.invoke(PROMPT, cached)
            assert primed.headers.get("x-cache") == "MISS", primed.text
            keyed = {"inputs": {"url": image, "shuru": "keyed"}}
            assert (await gw.invoke(PROMPT, keyed, Idempotency_Key="k-1")).status_code == 200

            stop_process(proc)  # Coze goes away
            for n in range(5):
                failed = await gw.invoke(PROMPT, {"inputs": {"url": image, "shuru": f"x{n}"}})
                assert failed.status_code >= 500
            refused = await gw.invoke(PROMPT, {"inputs": {"url": image, "shuru": "open"}})
            assert refused.status_code == 503
            assert refused.json()["message"].startswith("No Coze executor is available")
            assert coze not in refused.text  # no internals: no base URL…
            assert "connect" not in refused.text  # …and no connection error
            assert int(refused.headers["retry-after"]) >= 1

            proc = start_coze()  # Coze is back; the open period ends
            await asyncio.sleep(1.1)
            hit = await gw.invoke(PROMPT, cached)
            assert (hit.status_code, hit.headers["x-cache"]) == (200, "HIT")
            replay = await gw.invoke(PROMPT, keyed, Idempotency_Key="k-1")
            assert replay.status_code == 200

            # Neither took the probe: the next real invoke probes, succeeds, closes the breaker.
            for n in range(3):
                fresh = await gw.invoke(PROMPT, {"inputs": {"url": image, "shuru": f"ok{n}"}})
                assert fresh.status_code == 200, fresh.text
            executor = gw.state.executors.get("only")
            assert executor is not None
            assert executor.breaker.state == "closed"
    finally:
        stop_process(proc)


async def test_a_task_for_a_self_hosted_coze_never_fails_over_to_an_account_without_the_switch(
    live: LiveFactory, tmp_path: Path
) -> None:
    """Its internal image URL passed the egress policy only for the self-hosted account."""
    dead = f"http://127.0.0.1:{free_port()}"

    def accounts(sim: str) -> Path:
        return write(
            tmp_path,
            f"""
executors:
  - {{id: inside, baseUrl: "{dead}", auth: {{type: token, token: pat_simulator}},
      allowInternalImageUrls: true}}
  - {{id: cloud, baseUrl: "{sim}", auth: {{type: token, token: pat_simulator}}}}
""",
        )

    async with live(
        coze_max_retries=0, coze_api_token=None, egress_allow="", executors_file=accounts
    ) as gw:
        internal = f"{gw.sim_url}/files/samples/square.png"  # loopback: internal here
        refused = await gw.invoke(
            "ability_coze_upscale_8k", {"inputs": {"url": internal, "bianchang": 64}}
        )
        assert refused.status_code == 400  # not every executor may read it
        answer = await gw.invoke(
            "ability_coze_upscale_8k",
            {"executorId": "inside", "inputs": {"url": internal, "bianchang": 64}},
        )
        assert answer.status_code == 502, answer.text
        async with gw.state.db.read() as conn:
            called = (await conn.execute(select(call_logs.c.executor_id))).scalars().all()
        assert called == ["inside"]
