"""The client commands (abilities, invoke, task) through the real entry point, against a real
gateway process."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import httpx

from tests.conftest import LiveGateway
from tests.support import cli


def env_for(gw: LiveGateway) -> dict[str, str]:
    return {"GATEWAY_URL": gw.url, "GATEWAY_TOKEN": gw.token}


def test_abilities_list_and_show(live_gateway: LiveGateway) -> None:
    listed = cli("abilities", "list", env=env_for(live_gateway))
    assert listed.returncode == 0, listed.stderr
    assert "ability_coze_prompt_extract" in listed.stdout
    assert "提示词提取" in listed.stdout
    as_json = json.loads(cli("abilities", "list", "--json", env=env_for(live_gateway)).stdout)
    assert len(as_json) == 8
    assert as_json[0]["inputSchema"]["fields"][0]["name"] == "url"
    shown = cli("abilities", "show", "ability_coze_upscale_8k", env=env_for(live_gateway))
    assert shown.returncode == 0
    assert "bianchang" in shown.stdout


def test_invoke_a_sync_ability_with_typed_inputs(
    live_gateway: LiveGateway, sample_image: str
) -> None:
    result = cli(
        "invoke",
        "ability_coze_upscale_8k",
        "-i",
        "bianchang=1024",
        "--image",
        sample_image,
        "--json",
        env=env_for(live_gateway),
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["status"] == "succeeded"
    png = httpx.get(body["images"][0]["sourceUrl"]).content
    assert struct.unpack(">II", png[16:24]) == (1024, 768)


def test_invoke_with_an_image_file_and_a_table(
    live_gateway: LiveGateway, sample_image: str, tmp_path: Path
) -> None:
    path = tmp_path / "in.png"
    path.write_bytes(httpx.get(sample_image).content)
    result = cli(
        "invoke",
        "ability_coze_outpaint",
        "--image",
        str(path),
        "-i",
        "expand_top=0",
        "-i",
        "expand_bottom=0",
        "-i",
        "expand_left=4",
        "-i",
        "expand_right=4",
        env=env_for(live_gateway),
    )
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stdout
    assert "/media/" in result.stdout  # the ossUrl column


def test_invoke_and_wait_for_a_generation(live_gateway: LiveGateway, sample_image: str) -> None:
    result = cli(
        "invoke",
        "ability_coze_image_gen_4step",
        "--image",
        sample_image,
        "-i",
        "width=64",
        "-i",
        "height=64",
        "-i",
        "prompt=一只猫",
        "--wait",
        "--json",
        env=env_for(live_gateway),
    )
    assert result.returncode == 0, result.stderr
    task = json.loads(result.stdout)
    assert task["status"] == "succeeded"
    assert len(task["resultPayload"]["images"]) == 4
    accepted = cli(
        "invoke",
        "ability_coze_image_gen_4step",
        "--image",
        sample_image,
        "-i",
        "width=64",
        "-i",
        "height=64",
        "-i",
        "prompt=again",
        env=env_for(live_gateway),
    )
    assert accepted.returncode == 0, accepted.stderr
    assert "it goes on: ability-gateway task wait task_" in accepted.stderr
    shown = cli("task", "show", task["id"], "--json", env=env_for(live_gateway))
    assert json.loads(shown.stdout)["id"] == task["id"]
    waited = cli("task", "wait", task["id"], env=env_for(live_gateway))
    assert waited.returncode == 0
    listed = cli(
        "task",
        "list",
        "--ability",
        "ability_coze_image_gen_4step",
        "--json",
        env=env_for(live_gateway),
    )
    assert task["id"] in [t["id"] for t in json.loads(listed.stdout)]


def test_task_cancel_and_errors_are_one_line_with_an_exit_code(
    live_gateway: LiveGateway, sample_image: str
) -> None:
    done = json.loads(
        cli(
            "invoke",
            "ability_coze_tagging_small",
            "--image",
            sample_image,
            "--json",
            env=env_for(live_gateway),
        ).stdout
    )
    task_id = done["metadata"]["taskId"]
    again = cli("task", "cancel", task_id, env=env_for(live_gateway))
    assert again.returncode == 1
    assert again.stderr.startswith("error: 409")
    assert len(again.stderr.strip().splitlines()) == 1
    assert again.stderr.count(task_id) <= 1  # the task is named once, not twice
    bad = cli(
        "invoke",
        "ability_coze_upscale_8k",
        "-i",
        "bianchang=9000",
        "--image",
        sample_image,
        env=env_for(live_gateway),
    )
    assert bad.returncode == 1
    assert "inputs.bianchang: must be at most 8192" in bad.stderr
    unknown = cli("abilities", "show", "nope", env=env_for(live_gateway))
    assert unknown.returncode == 1
    assert "404" in unknown.stderr
    no_token = cli("abilities", "list", env={"GATEWAY_URL": live_gateway.url, "GATEWAY_TOKEN": ""})
    assert no_token.returncode == 1
    assert "no token" in no_token.stderr
    nobody = cli(
        "abilities", "list", env={"GATEWAY_URL": "http://127.0.0.1:9", "GATEWAY_TOKEN": "t"}
    )
    assert nobody.returncode == 1
    assert nobody.stderr.startswith("error: ")
    assert not nobody.stderr.startswith("error: - ")  # no status placeholder without an answer
    wrong = cli(
        "abilities", "list", "--token", "agw_" + "x" * 43, env={"GATEWAY_URL": live_gateway.url}
    )
    assert wrong.returncode == 1
    assert "401" in wrong.stderr


def test_a_missing_image_file_is_one_line(live_gateway: LiveGateway) -> None:
    result = cli(
        "invoke",
        "ability_coze_prompt_extract",
        "--image",
        "/nonexistent.png",
        env=env_for(live_gateway),
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error:")
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
