"""Completion notices in-process: signing, bodies, scheduling, retries and shutdown."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from ability_gateway.simulator import SimulatorConfig
from ability_gateway.simulator.jobs import JOB_ERROR, Job, JobRegistry
from ability_gateway.simulator.notices import (
    Notifier,
    notice_body,
    notice_id,
    secret_key,
    sign,
)

from .conftest import free_port

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
TINY_DELAYS = (0.01, 0.02, 0.04)


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    # The example published with the Standard Webhooks specification.
    key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    signature = sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_secret_key_rules() -> None:
    assert secret_key(SECRET) == bytes(range(32))
    assert secret_key("plain-secret") == b"plain-secret"
    assert secret_key("密钥") == "密钥".encode()
    with pytest.raises(ValueError, match="base64"):
        secret_key("whsec_not*base64")
    with pytest.raises(ValueError, match="empty"):
        secret_key("whsec_")


def test_notice_id_is_stable_per_job_and_distinct_between_jobs() -> None:
    assert notice_id("job_a") == notice_id("job_a") != notice_id("job_b")
    assert notice_id("job_a").startswith("msg_")
    assert len(notice_id("job_a")) == 4 + 32


def make_job(registry: JobRegistry, kind: str = "image_gen_4step", count: int = 4) -> Job:
    return registry.create(
        workflow_id="7597701996124045312",
        kind=kind,
        width=768,
        height=512,
        image_count=count,
        digest="ef" * 32,
        base_url="http://sim.test",
    )


def test_notice_body_is_the_final_report() -> None:
    job = make_job(JobRegistry(30.0))
    body = json.loads(notice_body(job))
    assert body == {
        "externalId": job.job_id,
        "status": "succeeded",
        "images": [f"http://sim.test{path}" for path in job.image_paths()],
        "texts": ["图片生成完成"],
        "error": None,
    }
    assert "图片生成完成".encode() in notice_body(job)  # UTF-8, not \\u escapes
    failed = make_job(JobRegistry(30.0, fail_rate=1.0))
    assert json.loads(notice_body(failed)) == {
        "externalId": failed.job_id,
        "status": "failed",
        "images": [],
        "texts": [],
        "error": JOB_ERROR,
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"notify_url": "http://127.0.0.1:1/cb"}, "notify_secret is required"),
        ({"notify_url": "ftp://x/cb", "notify_secret": "s"}, "notify_url must be"),
        ({"notify_url": "http://x/cb", "notify_secret": "whsec_!!"}, "base64"),
        ({"job_fail_rate": 1.5}, "job_fail_rate"),
        ({"throttle_every": -1}, "throttle_every"),
    ],
)
def test_config_rejects_unusable_notice_and_knob_settings(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SimulatorConfig(**changes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The Notifier against an in-process receiver.


@dataclass
class Receiver:
    url: str
    statuses: list[int] = field(default_factory=list)
    """Answers for the next POSTs, in order; 200 once used up."""
    got: list[tuple[float, str, dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append(
            (time.monotonic(), request.path, dict(request.headers), await request.read())
        )
        self.arrived.set()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.got) < count:
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver(url="")
    app = web.Application()
    app.router.add_post("/{tail:.*}", found.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    found.url = f"http://{host}:{port}/hooks/"
    try:
        yield found
    finally:
        await runner.cleanup()


async def test_notices_go_out_in_due_order_signed(receiver: Receiver) -> None:
    notifier = Notifier(receiver.url, SECRET, retry_delays=TINY_DELAYS)
    await notifier.start()
    try:
        late = make_job(JobRegistry(0.6, on_create=notifier.schedule))
        await asyncio.sleep(0.05)  # the scheduler is asleep until `late` is due
        soon = make_job(JobRegistry(0.1, on_create=notifier.schedule), kind="pattern_extract")
        await receiver.wait_for(2)
    finally:
        await notifier.stop()
    assert [path for _, path, _, _ in receiver.got] == [
        f"/hooks/{soon.job_id}",
        f"/hooks/{late.job_id}",
    ]
    for _, _, headers, body in receiver.got:
        msg_id, timestamp = headers["webhook-id"], int(headers["webhook-timestamp"])
        assert headers["Content-Type"] == "application/json"
        assert abs(timestamp - time.time()) < 60
        assert headers["webhook-signature"] == sign(bytes(range(32)), msg_id, timestamp, body)
    assert json.loads(receiver.got[0][3])["texts"] == ["花纹提取完成"]
    assert notifier.pending == 0


async def test_failed_attempts_are_retried_then_given_up_with_one_log_line(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.statuses = [500, 502, 503, 504, 500]
    notifier = Notifier(receiver.url, SECRET, retry_delays=TINY_DELAYS)
    await notifier.start()
    try:
        with caplog.at_level(logging.WARNING, logger="ability_gateway.simulator.notices"):
            job = make_job(JobRegistry(0.0, on_create=notifier.schedule))
            await receiver.wait_for(4)
            async with asyncio.timeout(10):
                while not caplog.records:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.2)  # no fifth attempt
    finally:
        await notifier.stop()
    assert len(receiver.got) == 4
    assert {headers["webhook-id"] for _, _, headers, _ in receiver.got} == {notice_id(job.job_id)}
    gaps = [
        later[0] - earlier[0]
        for earlier, later in zip(receiver.got, receiver.got[1:], strict=False)
    ]
    assert all(gap >= delay * 0.9 for gap, delay in zip(gaps, TINY_DELAYS, strict=True))
    [record] = caplog.records
    assert record.getMessage() == (
        f"notice {notice_id(job.job_id)} for job {job.job_id} to "
        f"{receiver.url}{job.job_id} given up after 4 attempts: HTTP 504"
    )


async def test_unreachable_receiver_is_retried_then_given_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = Notifier(f"http://127.0.0.1:{free_port()}", "plain", retry_delays=TINY_DELAYS)
    await notifier.start()
    try:
        with caplog.at_level(logging.WARNING, logger="ability_gateway.simulator.notices"):
            make_job(JobRegistry(0.0, on_create=notifier.schedule))
            async with asyncio.timeout(10):
                while not caplog.records:
                    await asyncio.sleep(0.01)
    finally:
        await notifier.stop()
    assert "given up after 4 attempts" in caplog.records[0].getMessage()


async def test_stop_cancels_pending_notices_promptly(receiver: Receiver) -> None:
    notifier = Notifier(receiver.url, SECRET)
    await notifier.start()
    make_job(JobRegistry(60.0, on_create=notifier.schedule))
    await asyncio.sleep(0.05)
    started = time.monotonic()
    await notifier.stop()
    assert time.monotonic() - started < 1.0
    assert receiver.got == []
    assert notifier.pending == 1  # never sent: notices do not outlive the process
