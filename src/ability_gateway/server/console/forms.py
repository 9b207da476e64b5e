"""The playground's form, generated from an ability's catalog entry, and its answer read back
into an ``InvokeRequest``.

Each input becomes one field with the catalog's checks as HTML constraints (``required``,
``type=number`` with ``min``/``max``/``step=1``, a ``<select>`` for an ``enum`` such as
outpaint's ``moxing``), so the browser catches most mistakes; the gateway's own checks
still run on the request, and their field-level messages are shown as the API gives them.
A number that does not parse is passed on as typed, for those checks to name.

The same request is shown as ``curl``, Python SDK and CLI commands, with ``$GATEWAY_URL`` and
``$GATEWAY_TOKEN`` (never the token) and ``--image PATH`` for an upload (never its bytes).
"""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from ability_gateway.server.abilities.catalog import AbilityDefinition, InputSpec
from ability_gateway.server.tasks.schemas import InvokeRequest

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class Field:
    name: str
    label: str
    widget: str  # url, text, number, checkbox, select, json
    required: bool
    is_image: bool = False
    minimum: float | None = None
    maximum: float | None = None
    step: str | None = None
    choices: list[str] = field(default_factory=list)


def fields_of(ability: AbilityDefinition) -> list[Field]:
    return [_field(spec, spec.name == ability.image_field) for spec in ability.inputs]


def _field(spec: InputSpec, is_image: bool) -> Field:
    label = spec.description or spec.name
    if spec.enum:
        return Field(spec.name, label, "select", spec.required, choices=[str(v) for v in spec.enum])
    if spec.type == "number":
        low = spec.minimum
        if spec.exclusive_minimum is not None:  # > 0 for an integer: at least 1
            low = spec.exclusive_minimum + 1 if spec.integer else spec.exclusive_minimum
        return Field(
            spec.name,
            label,
            "number",
            spec.required,
            minimum=low,
            maximum=spec.maximum,
            step="1" if spec.integer else "any",
        )
    if spec.type == "boolean":
        return Field(spec.name, label, "checkbox", False)
    if spec.type in ("object", "array"):
        return Field(spec.name, label, "json", spec.required)
    widget = "url" if spec.format == "url" else "text"
    return Field(spec.name, label, widget, spec.required, is_image=is_image)


@dataclass(frozen=True)
class Submitted:
    request: InvokeRequest
    respond_async: bool
    upload_name: str | None  # the uploaded file's name, for the CLI snippet


def read_form(
    ability: AbilityDefinition, form: dict[str, Any], upload: tuple[str, str, bytes] | None
) -> Submitted:
    """The invoke request a submitted playground form means. ``upload``: (file name,
    content type, bytes) of the image file, if one was chosen."""
    inputs: dict[str, Any] = {}
    for spec in ability.inputs:
        raw = form.get(f"in.{spec.name}")
        if spec.type == "boolean":
            inputs[spec.name] = raw == "on"
            continue
        if raw is None or raw == "":
            continue
        if spec.name == ability.image_field and upload is not None:
            continue  # the file fills it
        inputs[spec.name] = _value(spec, str(raw))
    image_base64 = None
    if upload is not None:
        _, content_type, data = upload
        kind = content_type if content_type.startswith("image/") else "image/png"
        image_base64 = f"data:{kind};base64,{base64.b64encode(data).decode()}"
    callback = str(form.get("callbackUrl") or "").strip() or None
    request = InvokeRequest(inputs=inputs, imageBase64=image_base64, callbackUrl=callback)
    return Submitted(request, form.get("async") == "on", upload[0] if upload else None)


def _value(spec: InputSpec, raw: str) -> Any:
    if spec.type == "number" and not spec.enum:
        try:
            number = float(raw)
        except ValueError:
            return raw  # the gateway's check names the field
        return int(number) if number.is_integer() else number
    if spec.type in ("object", "array"):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def snippets(ability: AbilityDefinition, submitted: Submitted) -> dict[str, str]:
    """The same request as ``curl``, Python SDK and CLI commands."""
    inputs = submitted.request.inputs
    body: dict[str, Any] = {"inputs": inputs}
    if submitted.request.callbackUrl:
        body["callbackUrl"] = submitted.request.callbackUrl
    upload = submitted.upload_name
    url = f'"$GATEWAY_URL/api/abilities/{ability.id}/invoke"'
    curl = [
        f"curl -sS {url}",
        '  -H "Authorization: Bearer $GATEWAY_TOKEN"',
        "  -H 'Content-Type: application/json'",
    ]
    if submitted.respond_async:
        curl.append("  -H 'Prefer: respond-async'")
    if upload:
        # The bytes go in as a data URL built by the shell, not pasted into the page.
        path = shlex.quote(upload)
        data = json.dumps(body, ensure_ascii=False)
        curl.append(
            f"""  -d "$(jq -c --arg img "data:image/png;base64,$(base64 -w0 {path})" """
            f"""'. + {{imageBase64: $img}}' <<< {shlex.quote(data)})\""""
        )
    else:
        curl.append(f"  -d {shlex.quote(json.dumps(body, ensure_ascii=False))}")
    python = [
        "import os",
        "from ability_gateway import Client",
        "",
        'client = Client(os.environ["GATEWAY_URL"], os.environ["GATEWAY_TOKEN"])',
    ]
    call = f"client.invoke_ability({ability.id!r}, {inputs!r}"
    if upload:
        call += f", image_path={upload!r}"
    if submitted.request.callbackUrl:
        call += f", callback_url={submitted.request.callbackUrl!r}"
    if submitted.respond_async:
        call += ", respond_async=True"
    python.append(f"result = {call})")
    python.append("print(result)")
    cli = ["ability-gateway invoke", ability.id]
    for name, value in inputs.items():
        text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
        cli.append(f"-i {shlex.quote(f'{name}={text}')}")
    if upload:
        cli.append(f"--image {shlex.quote(upload)}")
    if submitted.request.callbackUrl:
        cli.append(f"--callback-url {shlex.quote(submitted.request.callbackUrl)}")
    if not submitted.respond_async:
        cli.append("--wait")
    return {"curl": " \\\n".join(curl), "python": "\n".join(python), "cli": " ".join(cli)}
