"""The simulator over real HTTP, with the official cozepy SDK as the reference client."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from cozepy import (
    Coze,
    CozeAPIError,
    TokenAuth,
    WorkflowExecuteStatus,
    WorkflowRunHistory,
    WorkflowRunResult,
)

from ability_gateway.simulator.png import render_png

from .conftest import (
    SAMPLE_LANDSCAPE,
    SAMPLE_SQUARE,
    TOKEN,
    WF_GEN_4STEP,
    WF_GEN_8STEP,
    WF_OUTPAINT,
    WF_PATTERN,
    WF_PROMPT,
    WF_TAG_LARGE,
    WF_TAG_SMALL,
    WF_UPSCALE,
    ImageHost,
    Simulator,
    run_simulator,
)
from .pngcheck import check_png

BEIJING = timezone(timedelta(hours=8))
LOGID = re.compile(r"^20\d{12}[0-9A-F]{20}$")
SERVER_ISSUES = (
    "We're currently experiencing server issues. Please try your request again after a short "
    "delay. If the problem persists, contact our support team."
)

StartSimulator = Callable[..., Simulator]


def coze_for(simulator: Simulator, token: str = TOKEN) -> Coze:
    return Coze(auth=TokenAuth(token), base_url=simulator.url)


@pytest.fixture(scope="module")
def coze(sim: Simulator) -> Coze:
    return coze_for(sim)


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.url, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


def params_for(simulator: Simulator, workflow_id: str) -> dict[str, Any]:
    source = simulator.file_url(SAMPLE_LANDSCAPE)
    by_workflow: dict[str, dict[str, Any]] = {
        WF_PROMPT: {"url": source, "shuru": "电商主图"},
        WF_PATTERN: {"url": source, "width": 512, "height": 512, "lora": "silk"},
        WF_GEN_4STEP: {"url": source, "width": 768, "height": 512, "prompt": "一只猫"},
        WF_GEN_8STEP: {"url": source, "width": 768, "height": 512, "prompt": "一只猫"},
        WF_OUTPAINT: {
            "Url": source,
            "expand_top": 16,
            "expand_bottom": 32,
            "expand_left": 64,
            "expand_right": 128,
            "moxing": "2",
        },
        WF_UPSCALE: {"url": source, "bianchang": 2048},
        WF_TAG_SMALL: {"url": source},
        WF_TAG_LARGE: {"url": source},
    }
    return by_workflow[workflow_id]


def data_of(result: WorkflowRunResult) -> dict[str, Any]:
    """The End-node variables of a sync run (``data`` decoded once)."""
    assert result.data is not None
    end_vars: dict[str, Any] = json.loads(result.data)
    return end_vars


def execute_id_of(result: WorkflowRunResult) -> str:
    assert result.execute_id is not None
    return result.execute_id


def run_raw(client: httpx.Client, body: Any) -> dict[str, Any]:
    response = client.post("/v1/workflow/run", json=body)
    assert response.status_code == 200
    payload: dict[str, Any] = response.json()
    assert payload["detail"]["logid"] == response.headers["X-Tt-Logid"]
    return payload


def png_size_at(url: str) -> tuple[int, int]:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert int(response.headers["content-length"]) == len(response.content)
    info, _ = check_png(response.content)
    assert info.raw_length == info.height * (1 + 3 * info.width)
    return info.width, info.height


def wait_for_end(coze: Coze, workflow_id: str, execute_id: str) -> WorkflowRunHistory:
    deadline = time.monotonic() + 20
    while True:
        history = coze.workflows.runs.run_histories.retrieve(
            workflow_id=workflow_id, execute_id=execute_id
        )
        if history.execute_status != WorkflowExecuteStatus.RUNNING:
            return history
        assert time.monotonic() < deadline, "async run never finished"
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Sync runs through cozepy.


@pytest.mark.parametrize(
    "workflow_id",
    [
        WF_PROMPT,
        WF_PATTERN,
        WF_GEN_4STEP,
        WF_GEN_8STEP,
        WF_OUTPAINT,
        WF_UPSCALE,
        WF_TAG_SMALL,
        WF_TAG_LARGE,
    ],
)
def test_sync_run_of_each_workflow_parses_in_cozepy(
    coze: Coze, sim: Simulator, workflow_id: str
) -> None:
    result = coze.workflows.runs.create(
        workflow_id=workflow_id, parameters=params_for(sim, workflow_id)
    )
    end_vars = data_of(result)
    assert set(end_vars) == {"output"}
    assert isinstance(end_vars["output"], str)
    assert end_vars["output"]
    assert re.fullmatch(r"\d{19}", execute_id_of(result))
    assert abs((int(execute_id_of(result)) >> 32) - time.time()) < 600
    assert result.debug_url == (
        f"https://www.coze.cn/work_flow?execute_id={result.execute_id}"
        f"&space_id=7597510943186190336&workflow_id={workflow_id}&execute_mode=2"
    )
    assert LOGID.match(result.response.logid)


def test_sync_success_body_shape(http: httpx.Client, sim: Simulator) -> None:
    payload = run_raw(http, {"workflow_id": WF_PROMPT, "parameters": params_for(sim, WF_PROMPT)})
    assert set(payload) == {"code", "msg", "data", "execute_id", "debug_url", "usage", "detail"}
    assert (payload["code"], payload["msg"]) == (0, "")
    usage = payload["usage"]
    assert usage["token_count"] == usage["input_count"] + usage["output_count"] > 0
    assert json.loads(payload["data"])["output"].startswith("电商主图，")


def test_logid_header_is_34_chars_of_beijing_time_and_hex(http: httpx.Client) -> None:
    response = http.get("/healthz")
    logid = response.headers["X-Tt-Logid"]
    assert LOGID.match(logid)
    assert len(logid) == 34
    stamped = datetime.strptime(logid[:14], "%Y%m%d%H%M%S").replace(tzinfo=BEIJING)
    assert abs((stamped - datetime.now(BEIJING)).total_seconds()) < 300
    assert response.json() == {"status": "ok"}


def test_parameters_as_json_string_equal_parameters_as_object(
    http: httpx.Client, sim: Simulator
) -> None:
    params = params_for(sim, WF_TAG_LARGE)
    as_object = run_raw(http, {"workflow_id": WF_TAG_LARGE, "parameters": params})
    as_string = run_raw(http, {"workflow_id": WF_TAG_LARGE, "parameters": json.dumps(params)})
    assert as_object["code"] == as_string["code"] == 0
    assert as_object["data"] == as_string["data"]


def test_integer_workflow_id_is_accepted(http: httpx.Client, sim: Simulator) -> None:
    payload = run_raw(
        http, {"workflow_id": int(WF_TAG_SMALL), "parameters": params_for(sim, WF_TAG_SMALL)}
    )
    assert payload["code"] == 0


def test_same_inputs_give_the_same_outputs(coze: Coze, sim: Simulator) -> None:
    for workflow_id in (WF_PROMPT, WF_TAG_SMALL, WF_OUTPAINT, WF_UPSCALE):
        params = params_for(sim, workflow_id)
        first = coze.workflows.runs.create(workflow_id=workflow_id, parameters=params)
        second = coze.workflows.runs.create(workflow_id=workflow_id, parameters=params)
        assert first.data == second.data
        assert first.execute_id != second.execute_id


def test_tagging_output_is_double_encoded(coze: Coze, sim: Simulator) -> None:
    result = coze.workflows.runs.create(
        workflow_id=WF_TAG_SMALL, parameters=params_for(sim, WF_TAG_SMALL)
    )
    output = data_of(result)["output"]
    assert isinstance(output, str)
    tags = json.loads(output)
    assert set(tags) == {"主体", "风格", "颜色"}


def test_outpaint_returns_a_png_of_source_plus_expansions(coze: Coze, sim: Simulator) -> None:
    result = coze.workflows.runs.create(
        workflow_id=WF_OUTPAINT, parameters=params_for(sim, WF_OUTPAINT)
    )
    url = data_of(result)["output"]
    assert url.startswith(sim.url + "/files/1216x816/")
    assert png_size_at(url) == (1024 + 64 + 128, 768 + 16 + 32)


def test_upscale_to_8192_returns_a_png_with_that_longest_side(coze: Coze, sim: Simulator) -> None:
    params = {"url": sim.file_url(SAMPLE_LANDSCAPE), "bianchang": 8192}
    result = coze.workflows.runs.create(workflow_id=WF_UPSCALE, parameters=params)
    assert png_size_at(data_of(result)["output"]) == (8192, 6144)


def test_generated_image_can_be_the_next_source(coze: Coze, sim: Simulator) -> None:
    params = {"url": sim.file_url(SAMPLE_SQUARE), "bianchang": 300}
    first = data_of(coze.workflows.runs.create(workflow_id=WF_UPSCALE, parameters=params))
    sides = {"expand_top": 0, "expand_bottom": 0, "expand_left": 10, "expand_right": 10}
    second = coze.workflows.runs.create(
        workflow_id=WF_OUTPAINT, parameters={"Url": first["output"], **sides}
    )
    assert png_size_at(data_of(second)["output"]) == (320, 300)


def test_generation_returns_a_fresh_job_id_per_run(coze: Coze, sim: Simulator) -> None:
    params = params_for(sim, WF_GEN_8STEP)
    first = data_of(coze.workflows.runs.create(workflow_id=WF_GEN_8STEP, parameters=params))
    second = data_of(coze.workflows.runs.create(workflow_id=WF_GEN_8STEP, parameters=params))
    assert re.fullmatch(r"job_[0-9a-f]{24}", first["output"])
    assert first["output"] != second["output"]


# --------------------------------------------------------------------------------------------
# Business errors: HTTP 200, code and msg.


def test_unknown_token_is_4100(sim: Simulator) -> None:
    with pytest.raises(CozeAPIError) as caught:
        coze_for(sim, "pat_wrong").workflows.runs.create(workflow_id=WF_TAG_SMALL, parameters={})
    assert (caught.value.code, caught.value.msg) == (4100, "authentication is invalid")
    assert caught.value.logid
    assert LOGID.match(caught.value.logid)


def test_missing_authorization_is_4100(sim: Simulator) -> None:
    response = httpx.post(sim.url + "/v1/workflow/run", json={"workflow_id": WF_TAG_SMALL})
    assert response.status_code == 200
    assert response.json()["code"] == 4100
    assert response.json()["msg"] == "authentication is invalid"


def test_accepted_tokens_are_configurable(start_simulator: StartSimulator) -> None:
    simulator = start_simulator("--token", "sat_one", "--token", "pat_two")
    for token in ("sat_one", "pat_two"):
        result = coze_for(simulator, token).workflows.runs.create(
            workflow_id=WF_TAG_SMALL, parameters={"url": simulator.file_url(SAMPLE_SQUARE)}
        )
        assert data_of(result)["output"]
    with pytest.raises(CozeAPIError) as caught:
        coze_for(simulator).workflows.runs.create(workflow_id=WF_TAG_SMALL, parameters={})
    assert caught.value.code == 4100


def test_unknown_workflow_is_4200(coze: Coze) -> None:
    with pytest.raises(CozeAPIError) as caught:
        coze.workflows.runs.create(workflow_id="7000000000000000001", parameters={"url": "x"})
    assert caught.value.code == 4200
    assert caught.value.msg == (
        "The workflow does not exist or has not been published. "
        "Please check the workflow_id and publish the workflow."
    )


def test_missing_parameter_is_4000(coze: Coze) -> None:
    with pytest.raises(CozeAPIError) as caught:
        coze.workflows.runs.create(
            workflow_id=WF_UPSCALE, parameters={"url": "http://x.test/a.png"}
        )
    assert (caught.value.code, caught.value.msg) == (
        4000,
        "Missing required parameters: 'bianchang'",
    )


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        (
            {"workflow_id": "0"},
            "The parameter workflow_id must be greater than 0. Please check your input.",
        ),
        (
            {"workflow_id": -3},
            "The parameter workflow_id must be greater than 0. Please check your input.",
        ),
        ({}, "The parameter workflow_id must be greater than 0. Please check your input."),
        ({"workflow_id": "abc"}, "The parameter workflow_id is invalid. Please check your input."),
        (
            {
                "workflow_id": WF_TAG_SMALL,
                "bot_id": "7400000000000000001",
                "app_id": "7400000000000000002",
            },
            "bot_id and app_id cannot be specified at the same time. Please check your input.",
        ),
        (
            {"workflow_id": WF_TAG_SMALL, "parameters": "{not json"},
            "The parameter parameters is not a valid JSON string. Please check your input.",
        ),
        (
            {"workflow_id": WF_TAG_SMALL, "parameters": [1, 2]},
            "The parameter parameters must be a JSON object. Please check your input.",
        ),
        (
            {"workflow_id": WF_TAG_SMALL, "parameters": {}, "is_async": "yes"},
            "The parameter is_async must be a boolean. Please check your input.",
        ),
        (
            {"workflow_id": WF_TAG_SMALL, "parameters": {}, "ext": "user"},
            "The parameter ext must be a map of strings. Please check your input.",
        ),
        ([1, 2, 3], "The request body must be a JSON object. Please check your input."),
        (
            {"workflow_id": WF_UPSCALE, "parameters": {"url": "u", "bianchang": "huge"}},
            "Invalid parameter 'bianchang': expected a number, got \"huge\"",
        ),
    ],
)
def test_bad_requests_are_4000(http: httpx.Client, body: Any, msg: str) -> None:
    payload = run_raw(http, body)
    assert (payload["code"], payload["msg"]) == (4000, msg)


def test_malformed_json_body_is_4000(http: httpx.Client) -> None:
    response = http.post(
        "/v1/workflow/run", content=b'{"workflow_id":', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200
    payload = response.json()
    assert payload["code"] == 4000
    assert payload["msg"] == "The request body is not valid JSON. Please check your input."
    assert payload["detail"]["logid"] == response.headers["X-Tt-Logid"]


def test_unreachable_source_fails_the_run_with_720701013(coze: Coze) -> None:
    url = "http://127.0.0.1:9/nothing.png"
    with pytest.raises(CozeAPIError) as caught:
        coze.workflows.runs.create(
            workflow_id=WF_UPSCALE, parameters={"url": url, "bianchang": 1024}
        )
    assert caught.value.code == 720701013
    assert caught.value.msg.startswith(
        f"Workflow execution failure: failed to download image from url {url}"
    )
    assert caught.value.debug_url
    assert "execute_id=" in caught.value.debug_url


def test_missing_own_file_fails_the_run(coze: Coze, sim: Simulator) -> None:
    url = sim.file_url("/files/samples/missing.png")
    with pytest.raises(CozeAPIError) as caught:
        coze.workflows.runs.create(workflow_id=WF_TAG_SMALL, parameters={"url": url})
    assert caught.value.code == 720701013
    assert (
        caught.value.msg
        == f"Workflow execution failure: failed to download image from url {url}: HTTP 404"
    )


def test_remote_png_and_jpeg_sources_are_measured(coze: Coze, image_host: ImageHost) -> None:
    image_host.files["/photo.png"] = ("image/png", render_png(300, 200))
    jpeg = (
        b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        b"\xff\xc0\x00\x11\x08\x01\x90\x02\x58\x03" + bytes(9) + b"\xff\xda\x00\x08" + bytes(64)
    )  # 600 x 400
    image_host.files["/photo.jpg"] = ("image/jpeg", jpeg)
    sides = {"expand_top": 0, "expand_bottom": 0, "expand_left": 0, "expand_right": 100}
    for path, expected in (("/photo.png", "400x200"), ("/photo.jpg", "700x400")):
        result = coze.workflows.runs.create(
            workflow_id=WF_OUTPAINT, parameters={"Url": image_host.url + path, **sides}
        )
        assert f"/files/{expected}/" in data_of(result)["output"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [("/missing.png", "HTTP 404"), ("/page.html", "not a PNG, JPEG, GIF or WebP image")],
)
def test_remote_non_images_fail_the_run(
    coze: Coze, image_host: ImageHost, path: str, reason: str
) -> None:
    image_host.files["/page.html"] = ("text/html", b"<html><body>hello</body></html>")
    url = image_host.url + path
    with pytest.raises(CozeAPIError) as caught:
        coze.workflows.runs.create(workflow_id=WF_PROMPT, parameters={"url": url})
    assert caught.value.code == 720701013
    assert (
        caught.value.msg
        == f"Workflow execution failure: failed to download image from url {url}: {reason}"
    )


def test_fail_rate_one_fails_every_sync_run(start_simulator: StartSimulator) -> None:
    simulator = start_simulator("--fail-rate", "1")
    with httpx.Client(
        base_url=simulator.url, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        payload = run_raw(
            client, {"workflow_id": WF_TAG_SMALL, "parameters": params_for(simulator, WF_TAG_SMALL)}
        )
    assert set(payload) == {"code", "msg", "debug_url", "detail"}
    assert (payload["code"], payload["msg"]) == (720701013, SERVER_ISSUES)
    with pytest.raises(CozeAPIError) as caught:
        coze_for(simulator).workflows.runs.create(
            workflow_id=WF_PROMPT, parameters=params_for(simulator, WF_PROMPT)
        )
    assert (caught.value.code, caught.value.msg) == (720701013, SERVER_ISSUES)
    assert caught.value.debug_url
    assert caught.value.debug_url.startswith("https://www.coze.cn/work_flow?execute_id=")


def test_fault_sequence_is_replayed_by_seed(start_simulator: StartSimulator) -> None:
    def outcomes(simulator: Simulator) -> list[int]:
        with httpx.Client(
            base_url=simulator.url, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            body = {"workflow_id": WF_TAG_SMALL, "parameters": params_for(simulator, WF_TAG_SMALL)}
            return [run_raw(client, body)["code"] for _ in range(24)]

    first = outcomes(start_simulator("--fail-rate", "0.5", "--seed", "7"))
    second = outcomes(start_simulator("--fail-rate", "0.5", "--seed", "7", "--token", TOKEN))
    assert first == second
    assert set(first) == {0, 720701013}


# --------------------------------------------------------------------------------------------
# Async runs and run history.


def test_async_run_is_running_then_succeeds_with_double_encoded_output(
    start_simulator: StartSimulator,
) -> None:
    # 1 s latency: the submit answers after 1 s and the run stays Running 1 s more, a wide window
    # for the first poll to see Running.
    simulator = start_simulator("--latency-ms", "1000")
    coze = coze_for(simulator)
    params = params_for(simulator, WF_TAG_LARGE)
    submitted = coze.workflows.runs.create(
        workflow_id=WF_TAG_LARGE, parameters=params, is_async=True
    )
    assert re.fullmatch(r"\d{19}", execute_id_of(submitted))
    assert not submitted.data

    running = coze.workflows.runs.run_histories.retrieve(
        workflow_id=WF_TAG_LARGE, execute_id=execute_id_of(submitted)
    )
    assert running.execute_status == WorkflowExecuteStatus.RUNNING
    assert running.output == '{"Output":"null"}'
    assert running.error_code == 0  # cozepy's reading of ""
    assert running.run_mode == 2

    done = wait_for_end(coze, WF_TAG_LARGE, execute_id_of(submitted))
    assert done.execute_status == WorkflowExecuteStatus.SUCCESS
    outer = json.loads(done.output)
    assert outer["node_status"] == "{}"
    end_vars = json.loads(outer["Output"])
    sync = coze.workflows.runs.create(workflow_id=WF_TAG_LARGE, parameters=params)
    assert end_vars == data_of(sync)
    assert isinstance(json.loads(end_vars["output"]), dict)
    assert done.debug_url == submitted.debug_url
    assert done.update_time >= done.create_time


def test_async_submit_and_history_raw_shapes(
    http: httpx.Client, coze: Coze, sim: Simulator
) -> None:
    params = params_for(sim, WF_PROMPT)
    body = {
        "workflow_id": WF_PROMPT,
        "parameters": params,
        "is_async": True,
        "ext": {"user_id": "u-42"},
    }
    submit = run_raw(http, body)
    assert set(submit) == {"code", "msg", "execute_id", "debug_url", "detail"}
    assert (submit["code"], submit["msg"]) == (0, "Success")
    wait_for_end(coze, WF_PROMPT, submit["execute_id"])

    response = http.get(f"/v1/workflows/{WF_PROMPT}/run_histories/{submit['execute_id']}")
    payload = response.json()
    assert (payload["code"], payload["msg"]) == (0, "")
    assert payload["detail"]["logid"] == response.headers["X-Tt-Logid"]
    [item] = payload["data"]
    assert item["execute_status"] == "Success"
    assert item["error_code"] == "0"
    assert item["error_message"] == ""
    assert item["connector_uid"] == "u-42"
    assert (item["bot_id"], item["connector_id"], item["run_mode"]) == ("0", "1024", 2)
    assert item["logid"] == submit["detail"]["logid"]
    assert (item["token"], item["cost"], item["is_output_trimmed"]) == ("0", "0.00000", False)
    assert item["node_execute_status"] == {}
    assert isinstance(item["create_time"], int)
    assert isinstance(item["update_time"], int)
    assert item["usage"]["token_count"] > 0
    assert json.loads(json.loads(item["output"])["Output"])["output"].startswith("电商主图，")


def test_sync_runs_are_in_the_history_too(coze: Coze, sim: Simulator) -> None:
    result = coze.workflows.runs.create(
        workflow_id=WF_UPSCALE, parameters=params_for(sim, WF_UPSCALE)
    )
    history = coze.workflows.runs.run_histories.retrieve(
        workflow_id=WF_UPSCALE, execute_id=execute_id_of(result)
    )
    assert history.execute_status == WorkflowExecuteStatus.SUCCESS
    assert history.run_mode == 0
    assert json.loads(json.loads(history.output)["Output"]) == data_of(result)


def test_async_failure_shows_in_history(start_simulator: StartSimulator) -> None:
    simulator = start_simulator("--fail-rate", "1")
    coze = coze_for(simulator)
    submitted = coze.workflows.runs.create(
        workflow_id=WF_TAG_SMALL, parameters=params_for(simulator, WF_TAG_SMALL), is_async=True
    )
    done = wait_for_end(coze, WF_TAG_SMALL, execute_id_of(submitted))
    assert done.execute_status == WorkflowExecuteStatus.FAIL
    assert done.error_code == 720701013
    assert done.error_message == SERVER_ISSUES
    raw = httpx.get(
        f"{simulator.url}/v1/workflows/{WF_TAG_SMALL}/run_histories/{submitted.execute_id}",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ).json()
    assert raw["data"][0]["error_code"] == "720701013"


def test_async_download_failure_shows_in_history(coze: Coze) -> None:
    url = "http://127.0.0.1:9/gone.png"
    submitted = coze.workflows.runs.create(
        workflow_id=WF_TAG_SMALL, parameters={"url": url}, is_async=True
    )
    done = wait_for_end(coze, WF_TAG_SMALL, execute_id_of(submitted))
    assert done.execute_status == WorkflowExecuteStatus.FAIL
    assert done.error_code == 720701013
    assert (done.error_message or "").startswith(
        f"Workflow execution failure: failed to download image from url {url}"
    )


def test_unknown_execute_id_is_4314(coze: Coze) -> None:
    with pytest.raises(CozeAPIError) as caught:
        coze.workflows.runs.run_histories.retrieve(
            workflow_id=WF_PROMPT, execute_id="7535298640308535332"
        )
    assert (caught.value.code, caught.value.msg) == (4314, "execution record not found")


def test_history_under_another_workflow_is_4314(coze: Coze, sim: Simulator) -> None:
    result = coze.workflows.runs.create(
        workflow_id=WF_TAG_SMALL, parameters=params_for(sim, WF_TAG_SMALL)
    )
    with pytest.raises(CozeAPIError) as caught:
        coze.workflows.runs.run_histories.retrieve(
            workflow_id=WF_TAG_LARGE, execute_id=execute_id_of(result)
        )
    assert (caught.value.code, caught.value.msg) == (4314, "execution record not found")


def test_history_needs_a_valid_token(sim: Simulator) -> None:
    with pytest.raises(CozeAPIError) as caught:
        coze_for(sim, "pat_wrong").workflows.runs.run_histories.retrieve(
            workflow_id=WF_PROMPT, execute_id="7535298640308535332"
        )
    assert (caught.value.code, caught.value.msg) == (4100, "authentication is invalid")


# --------------------------------------------------------------------------------------------
# Files, public URL, process lifecycle.


@pytest.mark.parametrize(
    ("path", "size"), [(SAMPLE_LANDSCAPE, (1024, 768)), (SAMPLE_SQUARE, (512, 512))]
)
def test_sample_images_are_real_pngs(sim: Simulator, path: str, size: tuple[int, int]) -> None:
    assert png_size_at(sim.file_url(path)) == size


def test_files_are_cacheable(sim: Simulator) -> None:
    url = sim.file_url("/files/640x480/cache-me.png")
    first = httpx.get(url)
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert LOGID.match(first.headers["x-tt-logid"])
    again = httpx.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert httpx.get(url).content == first.content


@pytest.mark.parametrize(
    "path",
    ["/files/0x10/a.png", "/files/16385x16/a.png", "/files/samples/nope.png", "/files/10x10/a.gif"],
)
def test_absurd_or_unknown_files_are_404(sim: Simulator, path: str) -> None:
    assert httpx.get(sim.file_url(path)).status_code == 404


def test_public_url_is_the_base_of_file_urls(start_simulator: StartSimulator) -> None:
    public = "http://files.example.test:8088"
    simulator = start_simulator("--public-url", public)
    coze = coze_for(simulator)
    params = {"url": simulator.file_url(SAMPLE_SQUARE), "bianchang": 1024}
    first = data_of(coze.workflows.runs.create(workflow_id=WF_UPSCALE, parameters=params))
    assert first["output"].startswith(public + "/files/1024x1024/upscale-")
    # The public URL is the simulator's own: feeding it back needs no download.
    sides = {"expand_top": 1, "expand_bottom": 1, "expand_left": 1, "expand_right": 1}
    second = coze.workflows.runs.create(
        workflow_id=WF_OUTPAINT, parameters={"Url": first["output"], **sides}
    )
    assert "/files/1026x1026/" in data_of(second)["output"]


def test_sigterm_stops_the_process_cleanly() -> None:
    with run_simulator() as simulator:
        simulator.process.terminate()
        assert simulator.process.wait(timeout=15) == 0
        assert simulator.process.stdout is not None
        assert simulator.process.stdout.read().decode() == (
            f"Coze simulator listening on {simulator.url}\n"
        )
