"""Every ability has an example invoke request in OpenAPI, and the gateway accepts it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from ability_gateway.server.abilities.catalog import AbilityDefinition, Catalog
from ability_gateway.server.abilities.validation import build_parameters
from ability_gateway.server.apidocs.examples import (
    PLACEHOLDER_IMAGE_URL,
    SIMULATOR_SAMPLE_PATH,
    example_image_url,
    invoke_example,
)
from ability_gateway.server.app import create_app
from ability_gateway.server.config import Settings
from ability_gateway.simulator.files import sample_path
from tests.server.conftest import LiveFactory

INVOKE = "/api/abilities/{ability_id}/invoke"
SHIPPED = Catalog.load()


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def body_examples(document: dict[str, Any]) -> dict[str, Any]:
    examples: dict[str, Any] = document["paths"][INVOKE]["post"]["requestBody"]["content"][
        "application/json"
    ]["examples"]
    return examples


def test_every_ability_has_an_example_named_for_it() -> None:
    document = create_app(settings()).openapi()
    examples = body_examples(document)
    assert list(examples) == [a.id for a in SHIPPED.all()]
    assert len(examples) == 8
    for ability in SHIPPED.all():
        example = examples[ability.id]
        assert ability.display_name in example["summary"]
        assert example["description"]
        assert set(example["value"]) == {"inputs"}


def test_the_ability_id_parameter_offers_the_same_examples() -> None:
    operation = create_app(settings()).openapi()["paths"][INVOKE]["post"]
    (parameter,) = [p for p in operation["parameters"] if p["name"] == "ability_id"]
    assert {name: e["value"] for name, e in parameter["examples"].items()} == {
        a.id: a.id for a in SHIPPED.all()
    }


@pytest.mark.parametrize("ability", SHIPPED.all(), ids=lambda a: a.id)
def test_the_example_passes_the_input_checks(ability: AbilityDefinition) -> None:
    inputs = invoke_example(ability, PLACEHOLDER_IMAGE_URL)["value"]["inputs"]
    assert build_parameters(ability, inputs, None) == inputs
    assert all(inputs.get(s.name) is not None for s in ability.inputs if s.required)
    assert inputs[ability.image_field or ""] == PLACEHOLDER_IMAGE_URL


def test_every_request_body_in_the_document_has_an_example() -> None:
    """Else Swagger UI invents one from the schema: `{"additionalProp1": {}}`."""
    document = create_app(settings()).openapi()
    bodies = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for media, content in operation.get("requestBody", {}).get("content", {}).items():
                bodies += 1
                assert content.get("examples") or "example" in content, (method, path, media)
    assert bodies >= 1
    assert "additionalProp1" not in json.dumps(document)


def test_the_snapshot_settings_give_a_placeholder_and_no_port() -> None:
    """tests/openapi.json is made under these settings: nothing of this machine is in it."""
    assert example_image_url(settings()) == PLACEHOLDER_IMAGE_URL
    text = json.dumps(body_examples(create_app(settings()).openapi()))
    assert "127.0.0.1" not in text
    assert "localhost" not in text


def test_the_simulator_as_executor_gives_its_sample_image() -> None:
    sim = settings(coze_base_url="http://127.0.0.1:8090/", coze_api_token="pat_simulator")
    assert example_image_url(sim) == "http://127.0.0.1:8090/files/samples/landscape.png"
    examples = body_examples(create_app(sim).openapi())
    inputs = examples["ability_coze_outpaint"]["value"]["inputs"]
    assert inputs["Url"] == "http://127.0.0.1:8090/files/samples/landscape.png"


def test_a_real_coze_or_an_executors_file_gives_the_placeholder(tmp_path: Path) -> None:
    assert example_image_url(settings(coze_api_token="pat_real")) == PLACEHOLDER_IMAGE_URL
    listed = settings(coze_api_token="pat_simulator", executors_file=tmp_path / "executors.yaml")
    assert example_image_url(listed) == PLACEHOLDER_IMAGE_URL


def test_the_sample_path_is_the_one_the_simulator_serves() -> None:
    assert sample_path("landscape") == SIMULATOR_SAMPLE_PATH


def test_a_ninth_catalog_entry_gets_an_example_without_code(tmp_path: Path) -> None:
    data = yaml.safe_load(
        Path(__file__).parents[3].joinpath("src/ability_gateway/server/catalog.yaml").read_text()
    )
    ninth = {
        "id": "ability_coze_ninth",
        "displayName": "第九",
        "description": "A made-up ability with every kind of input",
        "capabilityKey": "ninth",
        "workflowId": "7600000000000000009",
        "imageField": "picture",
        "output": {"kind": "media"},
        "inputs": [
            {"name": "picture", "type": "string", "required": True, "format": "url"},
            {
                "name": "scale",
                "type": "number",
                "required": True,
                "exclusiveMinimum": 2000,
                "maximum": 2000.5,
            },
            {
                "name": "steps",
                "type": "number",
                "required": True,
                "integer": True,
                "minimum": 2000,
                "maximum": 4000,
            },
            {
                "name": "seed",
                "type": "number",
                "required": True,
                "integer": True,
                "exclusiveMinimum": 4096,
                "maximum": 8192,
            },
            {"name": "style", "type": "string", "enum": ["a", "b"]},
            {"name": "sharp", "type": "boolean", "required": True},
            {"name": "options", "type": "object", "required": True},
            {"name": "layers", "type": "array", "required": True},
            {"name": "note", "type": "string", "description": "自由备注"},
        ],
    }
    disabled = {**ninth, "id": "ability_coze_off", "status": "disabled"}
    data["abilities"] += [ninth, disabled]
    catalog_file = tmp_path / "catalog.yaml"
    catalog_file.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    examples = body_examples(create_app(settings(catalog_file=catalog_file)).openapi())
    assert "ability_coze_off" not in examples  # a disabled ability answers 400 to any body
    example = examples["ability_coze_ninth"]
    inputs = example["value"]["inputs"]
    assert inputs == {
        "picture": PLACEHOLDER_IMAGE_URL,
        "scale": 2000.25,
        "steps": 2000,
        "seed": 4097,
        "style": "a",
        "sharp": False,
        "options": {},
        "layers": [],
    }
    assert "`note` (自由备注)" in example["description"]
    ability = Catalog.load(catalog_file).get("ability_coze_ninth")
    assert ability is not None
    assert build_parameters(ability, inputs, None) == inputs


async def test_every_example_sent_to_the_gateway_is_accepted(live: LiveFactory) -> None:
    """The published examples, as Swagger UI's "Try it out" sends them, against the simulator."""
    async with live() as gw:
        document = (await gw.client.get("/openapi.json")).json()
        examples = body_examples(document)
        assert len(examples) == 8
        for ability_id, example in examples.items():
            assert gw.sim_url + SIMULATOR_SAMPLE_PATH in example["value"]["inputs"].values()
            answer = await gw.invoke(ability_id, example["value"])
            assert answer.status_code in (200, 202), (ability_id, answer.text)
            assert answer.json()["abilityId"] == ability_id
