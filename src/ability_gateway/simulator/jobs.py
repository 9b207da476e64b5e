"""External generation jobs started by the pattern-extraction and image-generation workflows.

Three of the eight workflows do not return images: they start a generation job "elsewhere" and
return its id as ``output``; the images appear ``job_seconds`` later. This registry is that
elsewhere. A job's state is a pure function of the clock, so there is no background task to run::

    created ──(job_seconds elapse)──▶ succeeded      (status(now) == "running" until ready_at)

Each job knows the files it will produce (``/files/{width}x{height}/{name}.png``), so whoever
resolves a job (a query endpoint, a completion notice) only has to render :meth:`Job.image_paths`
against a base URL.

Job ids are unique per run, like a real queue's. What a job *produces* is deterministic: the image
names derive from the run's input digest, so the same inputs yield the same pictures.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ability_gateway.simulator.files import generated_path

__all__ = ["Job", "JobRegistry", "JobStatus"]

JobStatus = Literal["running", "succeeded"]


@dataclass(frozen=True, slots=True)
class Job:
    """One external generation job and the images it yields when done."""

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
    """Unix seconds at which the job is done."""

    def status(self, now: float) -> JobStatus:
        """``"running"`` until ``ready_at``, then ``"succeeded"``."""
        return "succeeded" if now >= self.ready_at else "running"

    def image_paths(self) -> list[str]:
        """Paths of the result images on the simulator (prefix them with its base URL)."""
        return [generated_path(self.width, self.height, name) for name in self.image_names]


class JobRegistry:
    """In-memory job registry, bounded: past ``max_jobs`` the oldest jobs are forgotten."""

    def __init__(
        self,
        job_seconds: float,
        *,
        clock: Callable[[], float] = time.time,
        max_jobs: int = 50_000,
    ) -> None:
        self.job_seconds = job_seconds
        self._clock = clock
        self._max_jobs = max_jobs
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
    ) -> Job:
        """Register a new job; ``digest`` (the run's input hash) names its result images."""
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
        )
        self._jobs[job.job_id] = job
        while len(self._jobs) > self._max_jobs:
            self._jobs.popitem(last=False)
        return job

    def get(self, job_id: str) -> Job | None:
        """The job with this id, or ``None`` if unknown (or evicted)."""
        return self._jobs.get(job_id)

    def status(self, job: Job) -> JobStatus:
        """The job's status at the registry's current time."""
        return job.status(self._clock())

    def __len__(self) -> int:
        return len(self._jobs)
