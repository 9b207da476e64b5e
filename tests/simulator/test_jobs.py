from __future__ import annotations

from ability_gateway.simulator.jobs import JobRegistry


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_job(registry: JobRegistry, digest: str = "ab" * 32, count: int = 2) -> str:
    job = registry.create(
        workflow_id="7597701996124045312",
        kind="image_gen_4step",
        width=640,
        height=480,
        image_count=count,
        digest=digest,
        prompt="a cat",
        source_url="http://example.test/a.png",
    )
    return job.job_id


def test_job_runs_for_job_seconds_then_succeeds() -> None:
    clock = FakeClock()
    registry = JobRegistry(5.0, clock=clock)
    job = registry.get(make_job(registry))
    assert job is not None
    assert (job.created_at, job.ready_at) == (1_000.0, 1_005.0)
    assert registry.status(job) == "running"
    clock.now = 1_004.9
    assert registry.status(job) == "running"
    clock.now = 1_005.0
    assert registry.status(job) == "succeeded"


def test_job_knows_its_result_files() -> None:
    registry = JobRegistry(1.0, clock=FakeClock())
    job = registry.get(make_job(registry, count=3))
    assert job is not None
    paths = job.image_paths()
    assert len(paths) == 3
    assert all(path.startswith("/files/640x480/image_gen_4step-") for path in paths)
    assert len(set(paths)) == 3


def test_job_ids_are_unique_but_results_follow_the_inputs() -> None:
    registry = JobRegistry(1.0, clock=FakeClock())
    first, second = make_job(registry), make_job(registry)
    assert first != second
    assert first.startswith("job_")
    first_job, second_job = registry.get(first), registry.get(second)
    assert first_job is not None
    assert second_job is not None
    assert first_job.image_paths() == second_job.image_paths()


def test_unknown_job_is_none() -> None:
    assert JobRegistry(1.0).get("job_missing") is None


def test_oldest_jobs_are_evicted_past_the_bound() -> None:
    registry = JobRegistry(1.0, clock=FakeClock(), max_jobs=2)
    ids = [make_job(registry) for _ in range(3)]
    assert len(registry) == 2
    assert registry.get(ids[0]) is None
    assert registry.get(ids[2]) is not None
