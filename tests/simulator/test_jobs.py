from __future__ import annotations

import hashlib

from ability_gateway.simulator.jobs import JOB_ERROR, Job, JobRegistry, job_fails


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


def digests(count: int) -> list[str]:
    return [hashlib.sha256(str(index).encode()).hexdigest() for index in range(count)]


def test_job_outcome_follows_digest_seed_and_rate() -> None:
    many = digests(2000)
    assert not any(job_fails(digest, 0, 0.0) for digest in many)
    assert all(job_fails(digest, 0, 1.0) for digest in many)
    first = [job_fails(digest, 7, 0.3) for digest in many]
    assert first == [job_fails(digest, 7, 0.3) for digest in many]  # replayed, no global state
    assert 0.25 < sum(first) / len(many) < 0.35
    assert first != [job_fails(digest, 8, 0.3) for digest in many]  # the seed matters


def test_failing_job_runs_then_fails_and_reports_the_error() -> None:
    clock = FakeClock()
    registry = JobRegistry(2.0, fail_rate=1.0, clock=clock)
    job = registry.get(make_job(registry))
    assert job is not None
    assert job.fails
    assert registry.status(job) == "running"
    clock.now += 2.0
    assert registry.status(job) == "failed"
    assert registry.report(job, "http://sim.test") == {
        "id": job.job_id,
        "status": "failed",
        "progress": 100,
        "images": [],
        "texts": [],
        "error": JOB_ERROR,
    }


def test_same_inputs_get_the_same_outcome_at_a_partial_rate() -> None:
    registry = JobRegistry(1.0, fail_rate=0.5, seed=3, clock=FakeClock())
    outcomes = set()
    for digest in digests(8):
        first, second = (
            registry.get(make_job(registry, digest)),
            registry.get(make_job(registry, digest)),
        )
        assert first is not None
        assert second is not None
        assert first.fails == second.fails
        outcomes.add(first.fails)
    assert outcomes == {True, False}


def test_progress_is_the_share_of_time_elapsed() -> None:
    clock = FakeClock()
    registry = JobRegistry(0.5, clock=clock)
    job = registry.get(make_job(registry))
    assert job is not None
    seen = []
    for elapsed in (0.0, 0.1, 0.25, 0.499, 0.5, 9.0):
        clock.now = 1_000.0 + elapsed
        seen.append(registry.report(job, "")["progress"])
    assert seen == [0, 20, 50, 99, 100, 100]


def test_zero_second_jobs_are_done_at_once() -> None:
    registry = JobRegistry(0.0, clock=FakeClock())
    job = registry.get(make_job(registry))
    assert job is not None
    assert registry.report(job, "")["status"] == "succeeded"


def test_succeeded_report_and_final_report() -> None:
    clock = FakeClock()
    registry = JobRegistry(1.0, clock=clock)
    job = registry.create(
        workflow_id="7597530887256801280",
        kind="pattern_extract",
        width=512,
        height=256,
        image_count=1,
        digest="cd" * 32,
        base_url="http://origin.test",
    )
    final = job.final_report()
    assert final == {
        "id": job.job_id,
        "status": "succeeded",
        "progress": 100,
        "images": [f"http://origin.test/files/512x256/pattern_extract-{'cd' * 10}-0.png"],
        "texts": ["花纹提取完成"],
        "error": None,
    }
    clock.now += 1.0
    assert registry.report(job, "http://origin.test") == final
    assert registry.report(job, "http://public.test")["images"] == [
        f"http://public.test/files/512x256/pattern_extract-{'cd' * 10}-0.png"
    ]


def test_on_create_sees_every_new_job() -> None:
    created: list[Job] = []
    registry = JobRegistry(1.0, clock=FakeClock(), on_create=created.append)
    ids = [make_job(registry), make_job(registry)]
    assert [job.job_id for job in created] == ids
