"""Resolving external jobs over real HTTP: the query workflow, /v1/sim/jobs, notices, throttling."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cozepy import Coze, CozeAPIError

from .conftest import (
    SAMPLE_LANDSCAPE,
    TOKEN,
    WF_GEN_4STEP,
    WF_JOB_QUERY,
    WF_PATTERN,
    WF_TAG_SMALL,
    NoticeReceiver,
    Simulator,
)
from .test_app import coze_for, data_of, png_size_at, run_raw, wait_for_end

StartSimulator = Callable[..., Simulator]

JOB_ERROR = "generation failed: upstream model error"
KEY = hashlib.sha256(b"notice test key").digest()
SECRET = "whsec_" + base64.b64encode(KEY).decode()
MSG_ID = re.compile(r"^msg_[0-9a-f]{32}$")


def gen_params(simulator: Simulator, width: int = 768, height: int = 512) -> dict[str, Any]:
    return {
        "url": simulator.file_url(SAMPLE_LANDSCAPE),
        "width": width,
        "height": height,
        "prompt": "一只猫",
        "lora": "silk",
    }


def submit(coze: Coze, simulator: Simulator, workflow_id: str = WF_GEN_4STEP, **size: int) -> str:
    result = coze.workflows.runs.create(
        workflow_id=workflow_id, parameters=gen_params(simulator, **size)
    )
    job_id = data_of(result)["output"]
    assert re.fullmatch(r"job_[0-9a-f]{24}", job_id)
    return str(job_id)


def query(coze: Coze, job_id: str) -> dict[str, Any]:
    """The query workflow's answer: ``data`` decoded, then its ``output`` JSON string."""
    output = data_of(
        coze.workflows.runs.create(workflow_id=WF_JOB_QUERY, parameters={"id": job_id})
    )
    assert set(output) == {"output"}
    assert isinstance(output["output"], str)
    report: dict[str, Any] = json.loads(output["output"])
    assert set(report) == {"id", "status", "progress", "images", "texts", "error"}
    return report


def wait_until_done(coze: Coze, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        report = query(coze, job_id)
        if report["status"] != "running":
            return report
        assert time.monotonic() < deadline, f"job {job_id} never finished"
        time.sleep(0.1)


def sim_job(simulator: Simulator, job_id: str, token: str = TOKEN) -> dict[str, Any]:
    response = httpx.get(
        f"{simulator.url}/v1/sim/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    payload: dict[str, Any] = response.json()
    assert payload["detail"]["logid"] == response.headers["X-Tt-Logid"]
    return payload


def verify(headers: dict[str, str], body: bytes, key: bytes = KEY) -> None:
    """Check a notice's Standard Webhooks signature the way a receiver would."""
    msg_id, timestamp = headers["webhook-id"], headers["webhook-timestamp"]
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    version, _, signature = headers["webhook-signature"].partition(",")
    assert version == "v1"
    assert hmac.compare_digest(signature, expected)
    assert abs(int(timestamp) - time.time()) < 300


# --------------------------------------------------------------------------------------------
# The query workflow and /v1/sim/jobs.


@pytest.fixture(scope="module")
def slow_jobs(start_simulator: StartSimulator) -> Simulator:
    """Jobs that stay running for the whole test run."""
    return start_simulator("--job-seconds", "600")


def test_query_of_a_fresh_job_is_running(slow_jobs: Simulator) -> None:
    coze = coze_for(slow_jobs)
    job_id = submit(coze, slow_jobs)
    report = query(coze, job_id)
    assert report == {
        "id": job_id,
        "status": "running",
        "progress": report["progress"],
        "images": [],
        "texts": [],
        "error": None,
    }
    assert 0 <= report["progress"] < 5
    payload = sim_job(slow_jobs, job_id)
    assert set(payload) == {"code", "msg", "data", "detail"}
    assert (payload["code"], payload["msg"]) == (0, "")
    # The same object as the query's answer, not string-encoded (progress may have ticked).
    assert payload["data"] == {**report, "progress": payload["data"]["progress"]}
    assert payload["data"]["progress"] >= report["progress"]


def test_query_works_as_an_async_run_too(slow_jobs: Simulator) -> None:
    coze = coze_for(slow_jobs)
    job_id = submit(coze, slow_jobs)
    submitted = coze.workflows.runs.create(
        workflow_id=WF_JOB_QUERY, parameters={"id": job_id}, is_async=True
    )
    assert submitted.execute_id is not None
    done = wait_for_end(coze, WF_JOB_QUERY, submitted.execute_id)
    output = json.loads(json.loads(done.output)["Output"])["output"]
    assert json.loads(output)["id"] == job_id


def test_query_of_an_unknown_job_fails_with_720701013(slow_jobs: Simulator) -> None:
    with pytest.raises(CozeAPIError) as caught:
        coze_for(slow_jobs).workflows.runs.create(
            workflow_id=WF_JOB_QUERY, parameters={"id": "job_000000000000000000000000"}
        )
    assert caught.value.code == 720701013
    assert caught.value.msg == (
        "Workflow execution failure: job job_000000000000000000000000 not found"
    )


def test_query_without_id_is_4000(slow_jobs: Simulator) -> None:
    with pytest.raises(CozeAPIError) as caught:
        coze_for(slow_jobs).workflows.runs.create(workflow_id=WF_JOB_QUERY, parameters={})
    assert (caught.value.code, caught.value.msg) == (4000, "Missing required parameters: 'id'")


def test_sim_jobs_unknown_id_and_bad_token(slow_jobs: Simulator) -> None:
    missing = sim_job(slow_jobs, "job_nope")
    assert (missing["code"], missing["msg"]) == (4314, "job not found")
    assert "data" not in missing
    unauthorized = sim_job(slow_jobs, "job_nope", token="pat_wrong")
    assert (unauthorized["code"], unauthorized["msg"]) == (4100, "authentication is invalid")


def test_jobs_succeed_with_pngs_of_the_requested_size(start_simulator: StartSimulator) -> None:
    simulator = start_simulator("--job-seconds", "1")
    coze = coze_for(simulator)
    gen_id = submit(coze, simulator, WF_GEN_4STEP, width=768, height=512)
    pattern_id = submit(coze, simulator, WF_PATTERN, width=320, height=640)
    first = query(coze, gen_id)
    assert first["status"] in ("running", "succeeded")

    done = wait_until_done(coze, gen_id)
    assert (done["status"], done["progress"], done["error"]) == ("succeeded", 100, None)
    assert done["texts"] == ["图片生成完成"]
    assert len(done["images"]) == 4
    assert len(set(done["images"])) == 4
    for url in done["images"]:
        assert url.startswith(simulator.url + "/files/768x512/image_gen_4step-")
        assert png_size_at(url) == (768, 512)
    assert sim_job(simulator, gen_id)["data"] == done

    pattern = wait_until_done(coze, pattern_id)
    assert pattern["texts"] == ["花纹提取完成"]
    [image] = pattern["images"]
    assert png_size_at(image) == (320, 640)


def test_job_fail_rate_fails_jobs_not_runs(start_simulator: StartSimulator) -> None:
    simulator = start_simulator("--job-seconds", "0.5", "--job-fail-rate", "1")
    coze = coze_for(simulator)
    job_id = submit(coze, simulator)  # the submitting run itself succeeds
    done = wait_until_done(coze, job_id)
    assert done == {
        "id": job_id,
        "status": "failed",
        "progress": 100,
        "images": [],
        "texts": [],
        "error": JOB_ERROR,
    }
    assert sim_job(simulator, job_id)["data"] == done


# --------------------------------------------------------------------------------------------
# Throttling the run-history route.


def test_every_nth_history_request_is_throttled(start_simulator: StartSimulator) -> None:
    simulator = start_simulator("--throttle-every", "3")
    with httpx.Client(
        base_url=simulator.url, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as client:
        run = run_raw(
            client,
            {
                "workflow_id": WF_TAG_SMALL,
                "parameters": {"url": simulator.file_url(SAMPLE_LANDSCAPE)},
            },
        )
        codes = []
        for _ in range(7):
            response = client.get(f"/v1/workflows/{WF_TAG_SMALL}/run_histories/{run['execute_id']}")
            assert response.status_code == 200
            payload = response.json()
            assert payload["detail"]["logid"] == response.headers["X-Tt-Logid"]
            if payload["code"] == 4009:
                assert payload["msg"] == "Request rate exceeded. Please retry later."
                assert set(payload) == {"code", "msg", "detail"}
            else:
                assert payload["data"][0]["execute_status"] == "Success"
            codes.append(payload["code"])
        # Other routes are not counted.
        assert client.get("/v1/sim/jobs/job_nope").json()["code"] == 4314
    assert codes == [0, 0, 4009, 0, 0, 4009, 0]


# --------------------------------------------------------------------------------------------
# Completion notices.


def test_a_finished_job_posts_one_signed_notice(
    start_simulator: StartSimulator, notice_receiver: NoticeReceiver
) -> None:
    notify_url = notice_receiver.url + "/api/provider_callbacks/coze/"  # trailing slash dropped
    simulator = start_simulator(
        "--job-seconds", "0.5", "--notify-url", notify_url, "--notify-secret", SECRET
    )
    coze = coze_for(simulator)
    job_id = submit(coze, simulator)
    [notice] = notice_receiver.wait_for(f"/api/provider_callbacks/coze/{job_id}", 1)
    assert notice.path == f"/api/provider_callbacks/coze/{job_id}"
    assert notice.headers["content-type"] == "application/json"
    assert MSG_ID.match(notice.headers["webhook-id"])
    verify(notice.headers, notice.body)
    body = json.loads(notice.body)
    final = query(coze, job_id)
    assert body == {
        "externalId": job_id,
        "status": "succeeded",
        "images": final["images"],
        "texts": ["图片生成完成"],
        "error": None,
    }
    assert len(body["images"]) == 4
    assert png_size_at(body["images"][0]) == (768, 512)
    time.sleep(1.5)  # longer than the first retry delay: nothing more arrives
    assert len(notice_receiver.under(f"/api/provider_callbacks/coze/{job_id}")) == 1


def test_failed_job_notice_with_a_plain_secret(
    start_simulator: StartSimulator, notice_receiver: NoticeReceiver
) -> None:
    simulator = start_simulator(
        "--job-seconds",
        "0.5",
        "--job-fail-rate",
        "1",
        "--notify-url",
        notice_receiver.url + "/plain",
        "--notify-secret",
        "dev-secret",
    )
    job_id = submit(coze_for(simulator), simulator, WF_PATTERN)
    [notice] = notice_receiver.wait_for(f"/plain/{job_id}", 1)
    verify(notice.headers, notice.body, key=b"dev-secret")
    assert json.loads(notice.body) == {
        "externalId": job_id,
        "status": "failed",
        "images": [],
        "texts": [],
        "error": JOB_ERROR,
    }


def test_notice_is_retried_after_errors_with_the_same_id(
    start_simulator: StartSimulator, notice_receiver: NoticeReceiver
) -> None:
    notice_receiver.failures["/flaky/"] = [500, 500]
    simulator = start_simulator(
        "--job-seconds",
        "0.5",
        "--notify-url",
        notice_receiver.url + "/flaky",
        "--notify-secret",
        SECRET,
    )
    job_id = submit(coze_for(simulator), simulator)
    notices = notice_receiver.wait_for(f"/flaky/{job_id}", 3)
    assert [notice.status for notice in notices] == [500, 500, 200]
    assert len({notice.headers["webhook-id"] for notice in notices}) == 1
    assert len({notice.body for notice in notices}) == 1
    for notice in notices:
        verify(notice.headers, notice.body)  # each attempt signed for its own timestamp
    stamps = [int(notice.headers["webhook-timestamp"]) for notice in notices]
    assert stamps[2] - stamps[0] >= 2  # 1 s + 2 s of backoff between the first and the third
    time.sleep(0.5)
    assert len(notice_receiver.under(f"/flaky/{job_id}")) == 3
