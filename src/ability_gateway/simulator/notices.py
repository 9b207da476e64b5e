"""Completion notices: each external job, when it finishes, POSTs one signed notice.

Enabled by ``notify_url`` + ``notify_secret`` (``--notify-url`` / ``--notify-secret``). When a job
reaches its ``ready_at`` the simulator sends::

    POST {notify_url}/{job_id}                     (notify_url without its trailing slash)
    Content-Type: application/json
    webhook-id: msg_<32 hex>                       one per notice, the same on every retry
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256(key, f"{webhook-id}.{webhook-timestamp}.{body}")>

    {"externalId": "job_…", "status": "succeeded" | "failed", "images": [...], "texts": [...],
     "error": null | "generation failed: upstream model error"}

The body holds the same values as the query workflow's final answer (``jobs.Job.final_report``),
image URLs on the base URL of the run that created the job. The signature follows Standard Webhooks
v1: the key is the base64-decoded secret after its ``whsec_`` prefix; a secret *without* that prefix
is used as its UTF-8 bytes (a simulator convenience: ``--notify-secret devsecret`` works too).

A non-2xx answer, a connection error or a 10 s timeout is retried after 1 s, 2 s and 4 s (four
attempts in all); then the notice is given up with one warning in the log. Each notice is delivered
by its own task, so a slow receiver delays no other notice.

Scheduling is one background task (started and stopped with the application) that sleeps until the
earliest pending job is due, woken early only when a new job is registered; there is no polling and
no thread. Everything is in memory: jobs whose completion falls while the simulator is down (or that
were created by an earlier run of the process) are never notified.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import heapq
import hmac
import itertools
import logging
import time
from collections.abc import Callable, Sequence

import aiohttp
import orjson

from ability_gateway.simulator.jobs import Job

__all__ = ["RETRY_DELAYS", "Notifier", "notice_body", "notice_id", "secret_key", "sign"]

logger = logging.getLogger(__name__)

RETRY_DELAYS: tuple[float, ...] = (1.0, 2.0, 4.0)
"""Seconds to wait before the 2nd, 3rd and 4th attempt of a notice."""
_SECRET_PREFIX = "whsec_"
_MAX_CONCURRENT_ATTEMPTS = 64


def secret_key(secret: str) -> bytes:
    """The HMAC key of a notify secret: base64 after ``whsec_``, else the secret's UTF-8 bytes."""
    if secret.startswith(_SECRET_PREFIX):
        try:
            key = base64.b64decode(secret.removeprefix(_SECRET_PREFIX), validate=True)
        except binascii.Error as exc:
            raise ValueError("a whsec_ secret must be base64 after its prefix") from exc
    else:
        key = secret.encode()
    if not key:
        raise ValueError("the notify secret must not be empty")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value (Standard Webhooks v1) for one attempt."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def notice_id(job_id: str) -> str:
    """The ``webhook-id`` of a job's notice: derived from the (unique) job id, so stable."""
    return "msg_" + hashlib.sha256(f"notice:{job_id}".encode()).hexdigest()[:32]


def notice_body(job: Job) -> bytes:
    """The JSON body of a job's notice (compact UTF-8, Chinese unescaped)."""
    report = job.final_report()
    return orjson.dumps(
        {
            "externalId": report["id"],
            "status": report["status"],
            "images": report["images"],
            "texts": report["texts"],
            "error": report["error"],
        }
    )


class Notifier:
    """Sends one completion notice per scheduled job when it is due (see the module docstring)."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        timeout_seconds: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url.rstrip("/")
        self._key = secret_key(secret)
        self._retry_delays = tuple(retry_delays)
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._clock = clock
        self._pending: list[tuple[float, int, Job]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._attempts: asyncio.Semaphore | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()

    def schedule(self, job: Job) -> None:
        """Queue ``job``'s notice for its ``ready_at`` (a ``JobRegistry`` ``on_create`` hook)."""
        heapq.heappush(self._pending, (job.ready_at, next(self._order), job))
        self._wake.set()

    @property
    def pending(self) -> int:
        """Notices scheduled and not yet started."""
        return len(self._pending)

    async def start(self) -> None:
        """Open the HTTP client and start the scheduler (call from the application's startup)."""
        if self._scheduler is not None:
            return
        self._session = aiohttp.ClientSession(timeout=self._timeout, trust_env=False)
        self._attempts = asyncio.Semaphore(_MAX_CONCURRENT_ATTEMPTS)
        self._scheduler = asyncio.create_task(self._run(), name="coze-sim-notices")

    async def stop(self) -> None:
        """Cancel the scheduler and any delivery in flight, then close the HTTP client."""
        tasks = [*self._deliveries]
        if self._scheduler is not None:
            tasks.append(self._scheduler)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._scheduler = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _run(self) -> None:
        while True:
            # Nothing runs between clear() and the wait below, so no schedule() can be missed.
            self._wake.clear()
            if not self._pending:
                await self._wake.wait()
                continue
            delay = self._pending[0][0] - self._clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                continue
            _, _, job = heapq.heappop(self._pending)
            task = asyncio.create_task(self._deliver(job))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, job: Job) -> None:
        msg_id = notice_id(job.job_id)
        body = notice_body(job)
        url = f"{self.url}/{job.job_id}"
        attempts = 1 + len(self._retry_delays)
        reason = ""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self._retry_delays[attempt - 1])
            reason = await self._attempt(url, msg_id, body)
            if not reason:
                logger.debug(
                    "notice %s for %s delivered (attempt %d)", msg_id, job.job_id, attempt + 1
                )
                return
        logger.warning(
            "notice %s for job %s to %s given up after %d attempts: %s",
            msg_id,
            job.job_id,
            url,
            attempts,
            reason,
        )

    async def _attempt(self, url: str, msg_id: str, body: bytes) -> str:
        """One POST; ``""`` on a 2xx answer, else why it failed."""
        if self._session is None or self._attempts is None:
            raise RuntimeError("Notifier.start() was not called")
        timestamp = int(self._clock())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, msg_id, timestamp, body),
        }
        try:
            async with (
                self._attempts,
                self._session.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response,
            ):
                await response.read()
                if 200 <= response.status < 300:
                    return ""
                return f"HTTP {response.status}"
        except (TimeoutError, aiohttp.ClientError) as exc:
            return "timed out" if isinstance(exc, TimeoutError) else str(exc) or type(exc).__name__
