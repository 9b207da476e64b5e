"""External generation jobs started by the pattern-extraction and image-generation workflows.

Three workflows do not return images: they start a generation job "elsewhere" and return its id
(``job_…``) as ``output``; the job finishes ``job_seconds`` later. This registry is that elsewhere.
A job's state is a pure function of the clock and of an outcome fixed when it is created::

    created ──(job_seconds elapse)──▶ succeeded   images + texts
                                 └──▶ failed      error (a share ``job_fail_rate`` of jobs)

Whether a job fails is decided once, at creation, from a SHA-256 of the seed and the run's input
digest: the same inputs and seed always give the same outcome, and no process-wide random state is
involved. Job ids are unique per run, like a real queue's; what a job *produces* is deterministic:
its image names derive from the input digest, so the same inputs yield the same pictures.

A job is resolved in two ways, and both report the same :meth:`Job.report` object:

* the query workflow (``behaviours.py``), which answers ``report(now, <request's base URL>)``;
* a completion notice (``notices.py``), sent once per job at ``ready_at`` with the final report
  rendered against the base URL of the run that created the job.

The report, JSON::

    {"id": "job_…", "status": "running" | "succeeded" | "failed", "progress": 0..100,
     "images": [absolute PNG URLs], "texts": ["图片生成完成"], "error": null | "…"}

``progress`` is the share of ``job_seconds`` elapsed (0..99 while running, 100 once finished either
way); ``images`` and ``texts`` are empty unless succeeded; ``error`` is ``null`` unless failed.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ability_gateway.simulator.files import generated_path

__all__ = ["JOB_ERROR", "Job", "JobRegistry", "JobStatus", "job_fails"]

JobStatus = Literal["running", "succeeded", "failed"]

JOB_ERROR = "generation failed: upstream model error"
"""The ``error`` of a failed job."""

_TEXTS = {"pattern_extract": "花纹提取完成"}
_DEFAULT_TEXT = "图片生成完成"


def job_fails(digest: str, seed: int, fail_rate: float) -> bool:
    """Whether a job with input ``digest`` fails: a uniform draw in [0, 1) keyed by seed+digest."""
    if fail_rate <= 0.0:
        return False
    draw = int(hashlib.sha256(f"job-outcome:{seed}:{digest}".encode()).hexdigest()[:16], 16)
    return draw / 2**64 < fail_rate


@dataclass(frozen=True, slots=True)
class Job:
    """One external generation job and what it yields when done."""

    job_id: str
    workflow_id: str
    kind: str
    """The workflow's short name, e.g. ``image_gen_4step``."""
    width: int
    height: int
    image_count: int
    image_names: tuple[str, ...]
    prompt: str
    source_url: str
    created_at: float
    """Unix seconds."""
    ready_at: float
    """Unix seconds at which the job is done (succeeded or failed)."""
    fails: bool = False
    """The outcome fixed at creation: the job ends ``failed`` instead of ``succeeded``."""
    base_url: str = ""
    """The simulator's base URL as seen by the run that created the job (for notices)."""

    def status(self, now: float) -> JobStatus:
        """``"running"`` until ``ready_at``, then ``"failed"`` or ``"succeeded"``."""
        if now < self.ready_at:
            return "running"
        return "failed" if self.fails else "succeeded"

    def progress(self, now: float) -> int:
        """Percent of the job's duration elapsed: 0..99 while running, 100 once finished."""
        if now >= self.ready_at:
            return 100
        duration = self.ready_at - self.created_at
        return max(0, min(99, int(100 * (now - self.created_at) / duration)))

    def image_paths(self) -> list[str]:
        """Paths of the result images on the simulator (prefix them with its base URL)."""
        return [generated_path(self.width, self.height, name) for name in self.image_names]

    def text(self) -> str:
        """The short Chinese line a succeeded job reports."""
        return _TEXTS.get(self.kind, _DEFAULT_TEXT)

    def report(self, now: float, base_url: str) -> dict[str, Any]:
        """The job's state at ``now`` (see the module docstring), image URLs on ``base_url``."""
        status = self.status(now)
        succeeded = status == "succeeded"
        return {
            "id": self.job_id,
            "status": status,
            "progress": self.progress(now),
            "images": [base_url + path for path in self.image_paths()] if succeeded else [],
            "texts": [self.text()] if succeeded else [],
            "error": JOB_ERROR if status == "failed" else None,
        }

    def final_report(self) -> dict[str, Any]:
        """The report once the job is done, on the base URL of the run that created it."""
        return self.report(self.ready_at, self.base_url)


class JobRegistry:
    """In-memory job registry, bounded: past ``max_jobs`` the oldest jobs are forgotten.

    ``on_create`` (if given) is called with every new job, e.g. to schedule its completion notice.
    """

    def __init__(
        self,
        job_seconds: float,
        *,
        fail_rate: float = 0.0,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        max_jobs: int = 50_000,
        on_create: Callable[[Job], None] | None = None,
    ) -> None:
        self.job_seconds = job_seconds
        self.fail_rate = fail_rate
        self.seed = seed
        self._clock = clock
        self._max_jobs = max_jobs
        self._on_create = on_create
        self._jobs: OrderedDict[str, Job] = OrderedDict()

    def create(
        self,
        *,
        workflow_id: str,
        kind: str,
        width: int,
        height: int,
        image_count: int,
        digest: str,
        prompt: str = "",
        source_url: str = "",
        base_url: str = "",
    ) -> Job:
        """Register a new job; ``digest`` (the run's input hash) names its images and outcome."""
        now = self._clock()
        job = Job(
            job_id="job_" + secrets.token_hex(12),
            workflow_id=workflow_id,
            kind=kind,
            width=width,
            height=height,
            image_count=image_count,
            image_names=tuple(f"{kind}-{digest[:20]}-{index}" for index in range(image_count)),
            prompt=prompt,
            source_url=source_url,
            created_at=now,
            ready_at=now + self.job_seconds,
            fails=job_fails(digest, self.seed, self.fail_rate),
            base_url=base_url,
        )
        self._jobs[job.job_id] = job
        while len(self._jobs) > self._max_jobs:
            self._jobs.popitem(last=False)
        if self._on_create is not None:
            self._on_create(job)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or ``None`` if unknown (or evicted)."""
        return self._jobs.get(job_id)

    def status(self, job: Job) -> JobStatus:
        """The job's status at the registry's current time."""
        return job.status(self._clock())

    def report(self, job: Job, base_url: str) -> dict[str, Any]:
        """The job's report at the registry's current time, image URLs on ``base_url``."""
        return job.report(self._clock(), base_url)

    def __len__(self) -> int:
        return len(self._jobs)
