"""Example invoke requests, one per active ability, written from the catalog into OpenAPI.

They appear in Swagger UI's and ReDoc's example lists of ``POST /api/abilities/{ability_id}/
invoke`` (body and path parameter, both named by ability id). Each is derived from the
ability's ``inputs`` (a catalog entry added tomorrow gets one too), so it passes the
gateway's input checks as it stands:

    input                                   example value
    enum (required or not)                  its first value
    the image input, or any required URL    the example image (below)
    other optional inputs                   left out, named in the description
    required number                         1024, moved inside minimum/maximum
    required string / boolean / object / array   a sample text / false / {} / []

The example image is the simulator's sample picture when the simulator is the executor
(``make demo``: "Try it out" then really runs), and a placeholder otherwise. The snapshot
(tests/openapi.json) is made under settings without an executor, so no port is in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from ability_gateway.server.abilities.catalog import AbilityDefinition, InputSpec
from ability_gateway.server.config import Settings

INVOKE_OPERATION_ID = "invoke_ability"
SIMULATOR_TOKEN = "pat_simulator"
# ability_gateway.simulator.files.sample_path("landscape") (a test holds the two together:
# the server does not import the simulator).
SIMULATOR_SAMPLE_PATH = "/files/samples/landscape.png"
PLACEHOLDER_IMAGE_URL = "https://images.example.com/photo.png"
SAMPLE_TEXT = "雪山脚下的湖泊，清晨薄雾，水彩风格"
SAMPLE_NUMBER = 1024


def example_image_url(settings: Settings) -> str:
    """The simulator's sample image if the simulator is the only executor, else a placeholder."""
    token = settings.coze_api_token
    if (
        settings.executors_file is None
        and token is not None
        and token.get_secret_value() == SIMULATOR_TOKEN
    ):
        return settings.coze_base_url.rstrip("/") + SIMULATOR_SAMPLE_PATH
    return PLACEHOLDER_IMAGE_URL


def _number(spec: InputSpec) -> int | float:
    value = float(SAMPLE_NUMBER)
    if spec.maximum is not None:
        value = min(value, spec.maximum)
    if spec.minimum is not None:
        value = max(value, spec.minimum)
    low = spec.exclusive_minimum
    if low is not None and value <= low:
        value = low + 1
        if spec.maximum is not None and value > spec.maximum:
            value = (low + spec.maximum) / 2
    if spec.integer or value.is_integer():
        return math.ceil(value)
    return value


def _value(ability: AbilityDefinition, spec: InputSpec, image_url: str) -> Any:
    """The example value of one input; None leaves it out."""
    if spec.enum:
        return spec.enum[0]
    if spec.name == ability.image_field or (spec.format == "url" and spec.required):
        return image_url
    if not spec.required:
        return None
    if spec.type == "number":
        return _number(spec)
    if spec.type == "string":
        return SAMPLE_TEXT
    if spec.type == "boolean":
        return False
    return {} if spec.type == "object" else []


def _answer(ability: AbilityDefinition) -> str:
    if ability.mode == "external_job":
        return (
            "Answers 202 at once: the generation goes on elsewhere. Follow the task at "
            "`Location` (`GET /api/ability_tasks/{taskId}`), or add a `callbackUrl`."
        )
    what = {
        "text": "the text in `texts`",
        "json": f"the JSON in `texts`, parsed under `assets` (`{ability.output.name or 'output'}`)",
        "media": "the output images in `images` (videos in `videos`)",
        "external_job": "the generation job's result",
    }[ability.output.kind]
    answer = f"Answers 200 with {what}, or 202 if it runs past its wait (`Prefer: wait=N`)."
    if ability.cache is not None:
        answer += (
            f" The same inputs again within {ability.cache.ttl_seconds:g} s are served "
            "from the cache (`X-Cache: HIT`)."
        )
    return answer


def invoke_example(ability: AbilityDefinition, image_url: str) -> dict[str, Any]:
    """An OpenAPI Example Object: a request body for ``ability`` that the gateway accepts."""
    inputs: dict[str, Any] = {}
    left_out: list[InputSpec] = []
    for spec in ability.inputs:
        value = _value(ability, spec, image_url)
        if value is None:
            left_out.append(spec)
        else:
            inputs[spec.name] = value
    lines = [
        ability.description or ability.display_name,
        f"`ability_id`: `{ability.id}`. {_answer(ability)}",
    ]
    if left_out:
        named = ", ".join(
            f"`{s.name}` ({s.description})" if s.description else f"`{s.name}`" for s in left_out
        )
        lines.append(f"Optional inputs left out: {named}.")
    if image_url in inputs.values():
        lines.append(_image_note(ability, image_url))
    return {
        "summary": f"{ability.display_name} · {ability.id}",
        "description": "\n\n".join(lines),
        "value": {"inputs": inputs},
    }


def _image_note(ability: AbilityDefinition, image_url: str) -> str:
    if image_url != PLACEHOLDER_IMAGE_URL:
        return "The image is the Coze simulator's sample picture: it runs as it is."
    if ability.image_field is not None:
        return (
            "Put the URL of your image in place of the placeholder, or leave "
            f"`inputs.{ability.image_field}` out and send the image as `imageUrl` or "
            "`imageBase64` (a `data:` URL)."
        )
    return "Put the URL of your image in place of the placeholder."


def add_invoke_examples(
    document: dict[str, Any], abilities: Iterable[AbilityDefinition], image_url: str
) -> dict[str, Any]:
    """Write the examples into the invoke operation's body and ``ability_id`` parameter."""
    active = [a for a in abilities if a.status == "active"]
    for item in document.get("paths", {}).values():
        for operation in item.values():
            if operation.get("operationId") != INVOKE_OPERATION_ID:
                continue
            body = operation["requestBody"]["content"]["application/json"]
            body["examples"] = {a.id: invoke_example(a, image_url) for a in active}
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "ability_id":
                    parameter["examples"] = {
                        a.id: {"summary": a.display_name, "value": a.id} for a in active
                    }
    return document
