"""The nine workflows' parameter rules and outputs, with a fake source-image lookup."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from ability_gateway.simulator.definition import BadParameter, Outcome, WorkflowFailure
from ability_gateway.simulator.jobs import JOB_ERROR, JobRegistry
from ability_gateway.simulator.workflows import WORKFLOWS

from .conftest import (
    WF_GEN_4STEP,
    WF_GEN_8STEP,
    WF_JOB_QUERY,
    WF_OUTPAINT,
    WF_PATTERN,
    WF_PROMPT,
    WF_TAG_LARGE,
    WF_TAG_SMALL,
    WF_UPSCALE,
)

SRC = "http://img.test/src.png"


class FakeClock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeContext:
    size: tuple[int, int] = (1024, 768)
    jobs: JobRegistry = field(default_factory=lambda: JobRegistry(5.0))
    looked_up: list[str] = field(default_factory=list)
    base_url: str = "http://sim.test"

    async def image_size(self, url: str) -> tuple[int, int]:
        self.looked_up.append(url)
        if url.endswith("/broken.png"):
            raise WorkflowFailure(f"failed to download image from url {url}: HTTP 404")
        return self.size

    def file_url(self, width: int, height: int, name: str) -> str:
        return f"{self.base_url}/files/{width}x{height}/{name}.png"


async def run(
    workflow_id: str, parameters: dict[str, Any], context: FakeContext | None = None
) -> Outcome:
    workflow = WORKFLOWS[workflow_id]
    return await workflow.run(workflow.bind(parameters), context or FakeContext())


def test_the_nine_published_workflows_exist() -> None:
    assert set(WORKFLOWS) == {
        WF_PROMPT,
        WF_PATTERN,
        WF_GEN_4STEP,
        WF_GEN_8STEP,
        WF_OUTPAINT,
        WF_UPSCALE,
        WF_TAG_SMALL,
        WF_TAG_LARGE,
        WF_JOB_QUERY,
    }
    assert WORKFLOWS[WF_JOB_QUERY].title == "生成任务查询"


def test_missing_required_parameter_is_named() -> None:
    with pytest.raises(BadParameter, match=r"^Missing required parameters: 'bianchang'$"):
        WORKFLOWS[WF_UPSCALE].bind({"url": SRC})


def test_parameter_names_are_case_sensitive() -> None:
    sides = {"expand_top": 1, "expand_bottom": 1, "expand_left": 1, "expand_right": 1}
    with pytest.raises(BadParameter, match=r"^Missing required parameters: 'Url'$"):
        WORKFLOWS[WF_OUTPAINT].bind({"url": SRC, **sides})


def test_null_counts_as_missing() -> None:
    with pytest.raises(BadParameter, match="'url'"):
        WORKFLOWS[WF_PROMPT].bind({"url": None})


def test_numeric_strings_are_numbers_and_junk_is_rejected() -> None:
    bound = WORKFLOWS[WF_UPSCALE].bind({"url": SRC, "bianchang": " 2048 "})
    assert bound.integer("bianchang") == 2048
    with pytest.raises(BadParameter, match=r"^Invalid parameter 'bianchang': expected a number"):
        WORKFLOWS[WF_UPSCALE].bind({"url": SRC, "bianchang": "big"})
    with pytest.raises(BadParameter, match="expected a number"):
        WORKFLOWS[WF_UPSCALE].bind({"url": SRC, "bianchang": True})


def test_objects_are_not_strings() -> None:
    with pytest.raises(BadParameter, match=r"^Invalid parameter 'url': expected a string"):
        WORKFLOWS[WF_PROMPT].bind({"url": {"file_id": "1"}})


def test_digest_ignores_unknown_keys_and_number_spelling() -> None:
    workflow = WORKFLOWS[WF_UPSCALE]
    first = workflow.bind({"url": SRC, "bianchang": 2048})
    second = workflow.bind({"bianchang": "2048", "url": SRC, "extra": "ignored"})
    third = workflow.bind({"url": SRC, "bianchang": 2049})
    assert first.digest == second.digest != third.digest


async def test_prompt_is_chinese_text_that_includes_the_user_wish() -> None:
    outcome = await run(WF_PROMPT, {"url": SRC, "shuru": "古风少女，月下"})
    prompt = outcome.end_vars["output"]
    assert prompt.startswith("古风少女，月下，")
    assert "横幅构图（1024×768）" in prompt
    assert outcome.usage.input_count > 0
    assert outcome.usage.output_count > 0


async def test_prompt_composition_follows_source_orientation() -> None:
    outcome = await run(WF_PROMPT, {"url": SRC}, FakeContext(size=(600, 900)))
    assert "竖幅构图" in outcome.end_vars["output"]


async def test_same_inputs_give_the_same_text_outputs() -> None:
    for workflow_id in (WF_PROMPT, WF_TAG_SMALL, WF_TAG_LARGE):
        first = await run(workflow_id, {"url": SRC})
        second = await run(workflow_id, {"url": SRC})
        other = await run(workflow_id, {"url": SRC + "?v=2"})
        assert first == second
        assert first.end_vars != other.end_vars


async def test_small_tagging_returns_a_json_string_of_three_categories() -> None:
    tags = json.loads((await run(WF_TAG_SMALL, {"url": SRC})).end_vars["output"])
    assert set(tags) == {"主体", "风格", "颜色"}
    assert all(isinstance(values, list) and values for values in tags.values())


async def test_large_tagging_returns_more_categories_and_tags() -> None:
    small = json.loads((await run(WF_TAG_SMALL, {"url": SRC})).end_vars["output"])
    large = json.loads((await run(WF_TAG_LARGE, {"url": SRC})).end_vars["output"])
    assert set(small) < set(large)
    assert sum(map(len, large.values())) > sum(map(len, small.values()))


async def test_outpaint_adds_the_expansions_to_the_source_size() -> None:
    outcome = await run(
        WF_OUTPAINT,
        {
            "Url": SRC,
            "expand_top": 10,
            "expand_bottom": 20,
            "expand_left": 30.0,
            "expand_right": "40",
        },
    )
    assert outcome.end_vars["output"].startswith("http://sim.test/files/1094x798/outpaint-")


@pytest.mark.parametrize(
    ("moxing", "expand", "message"),
    [
        ("4", 0, "unsupported moxing '4'"),
        ("1", -5, "expand_top must not be negative"),
        ("2", 16000, "exceeds 16384 pixels per side"),
    ],
)
async def test_outpaint_failures(moxing: str, expand: int, message: str) -> None:
    params = {
        "Url": SRC,
        "expand_top": expand,
        "expand_bottom": 0,
        "expand_left": 0,
        "expand_right": 0,
    }
    with pytest.raises(WorkflowFailure, match=message) as caught:
        await run(WF_OUTPAINT, {**params, "moxing": moxing})
    assert caught.value.message.startswith("Workflow execution failure: ")


async def test_outpaint_models_are_all_accepted() -> None:
    sides = {"expand_top": 1, "expand_bottom": 1, "expand_left": 1, "expand_right": 1}
    urls = {
        (await run(WF_OUTPAINT, {"Url": SRC, **sides, "moxing": m})).end_vars["output"]
        for m in "123"
    }
    assert len(urls) == 3


@pytest.mark.parametrize(
    ("size", "bianchang", "expected"),
    [
        ((1024, 768), 8192, "8192x6144"),
        ((768, 1024), 2048, "1536x2048"),
        ((512, 512), 100, "100x100"),
    ],
)
async def test_upscale_keeps_aspect_ratio(
    size: tuple[int, int], bianchang: int, expected: str
) -> None:
    outcome = await run(WF_UPSCALE, {"url": SRC, "bianchang": bianchang}, FakeContext(size=size))
    assert f"/files/{expected}/upscale-" in outcome.end_vars["output"]


@pytest.mark.parametrize("bianchang", [0, 8193])
async def test_upscale_rejects_sides_beyond_8k(bianchang: int) -> None:
    with pytest.raises(
        WorkflowFailure, match=f"bianchang must be between 1 and 8192, got {bianchang}"
    ):
        await run(WF_UPSCALE, {"url": SRC, "bianchang": bianchang})


@pytest.mark.parametrize(
    ("workflow_id", "extra", "images"),
    [
        (WF_PATTERN, {"lora": "silk"}, 1),
        (WF_GEN_4STEP, {"prompt": "猫"}, 4),
        (WF_GEN_8STEP, {"prompt": "猫"}, 4),
    ],
)
async def test_generation_workflows_start_a_job(
    workflow_id: str, extra: dict[str, Any], images: int
) -> None:
    context = FakeContext()
    outcome = await run(workflow_id, {"url": SRC, "width": 640, "height": 480, **extra}, context)
    job = context.jobs.get(outcome.end_vars["output"])
    assert job is not None
    assert (job.workflow_id, job.width, job.height, job.image_count) == (
        workflow_id,
        640,
        480,
        images,
    )
    assert job.source_url == SRC
    assert job.base_url == "http://sim.test"


async def test_generation_rejects_impossible_sizes() -> None:
    with pytest.raises(WorkflowFailure, match="width must be between 1 and 16384, got 0"):
        await run(WF_GEN_4STEP, {"url": SRC, "width": 0, "height": 480, "prompt": "x"})


@pytest.mark.parametrize("workflow_id", sorted(set(WORKFLOWS) - {WF_JOB_QUERY}))
async def test_every_workflow_reads_its_source_image(workflow_id: str) -> None:
    workflow = WORKFLOWS[workflow_id]
    params: dict[str, Any] = {param.name: 1 for param in workflow.params if param.kind == "number"}
    params.update({p.name: "x" for p in workflow.params if p.kind == "string"})
    image_param = "Url" if workflow_id == WF_OUTPAINT else "url"
    params[image_param] = "http://img.test/broken.png"
    with pytest.raises(
        WorkflowFailure,
        match=re.escape("failed to download image from url http://img.test/broken.png"),
    ):
        await workflow.run(workflow.bind(params), FakeContext())


# --------------------------------------------------------------------------------------------
# The job query workflow.


async def start_job(context: FakeContext, workflow_id: str = WF_GEN_4STEP) -> str:
    params = {"url": SRC, "width": 640, "height": 480, "prompt": "猫", "lora": "silk"}
    job_id = (await run(workflow_id, params, context)).end_vars["output"]
    assert isinstance(job_id, str)
    return job_id


async def query(context: FakeContext, job_id: str) -> dict[str, Any]:
    outcome = await run(WF_JOB_QUERY, {"id": job_id}, context)
    assert set(outcome.end_vars) == {"output"}
    output = outcome.end_vars["output"]
    assert isinstance(output, str)  # a JSON string: data is double-encoded
    report: dict[str, Any] = json.loads(output)
    return report


async def test_query_reports_running_with_progress_then_succeeded() -> None:
    clock = FakeClock()
    context = FakeContext(jobs=JobRegistry(10.0, clock=clock))
    job_id = await start_job(context)
    assert context.looked_up == [SRC]

    assert await query(context, job_id) == {
        "id": job_id,
        "status": "running",
        "progress": 0,
        "images": [],
        "texts": [],
        "error": None,
    }
    clock.now += 2.5
    assert (await query(context, job_id))["progress"] == 25
    clock.now += 7.5
    done = await query(context, job_id)
    assert (done["status"], done["progress"], done["error"]) == ("succeeded", 100, None)
    assert done["texts"] == ["图片生成完成"]
    assert len(done["images"]) == 4
    assert all(url.startswith("http://sim.test/files/640x480/") for url in done["images"])
    assert context.looked_up == [SRC]  # the query reads no source image


async def test_query_images_follow_the_querying_run_base_url() -> None:
    clock = FakeClock()
    context = FakeContext(jobs=JobRegistry(1.0, clock=clock))
    job_id = await start_job(context, WF_PATTERN)
    clock.now += 1
    elsewhere = FakeContext(jobs=context.jobs, base_url="http://public.test:8088")
    done = await query(elsewhere, job_id)
    assert done["texts"] == ["花纹提取完成"]
    [image] = done["images"]
    assert image.startswith("http://public.test:8088/files/640x480/pattern_extract-")


async def test_query_reports_a_failed_job() -> None:
    clock = FakeClock()
    context = FakeContext(jobs=JobRegistry(1.0, fail_rate=1.0, clock=clock))
    job_id = await start_job(context, WF_GEN_8STEP)
    assert (await query(context, job_id))["status"] == "running"
    clock.now += 1
    assert await query(context, job_id) == {
        "id": job_id,
        "status": "failed",
        "progress": 100,
        "images": [],
        "texts": [],
        "error": JOB_ERROR,
    }


async def test_query_of_an_unknown_job_fails_the_run() -> None:
    with pytest.raises(WorkflowFailure) as caught:
        await run(WF_JOB_QUERY, {"id": "job_nope"})
    assert caught.value.message == "Workflow execution failure: job job_nope not found"


def test_query_needs_an_id() -> None:
    with pytest.raises(BadParameter, match=r"^Missing required parameters: 'id'$"):
        WORKFLOWS[WF_JOB_QUERY].bind({"job": "job_x"})
