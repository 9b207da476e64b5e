from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ability_gateway.server.abilities.catalog import Catalog

WORKFLOWS = {
    "ability_coze_prompt_extract": "7597535455856295936",
    "ability_coze_pattern_extract": "7597530887256801280",
    "ability_coze_image_gen_4step": "7597701996124045312",
    "ability_coze_image_gen_8step": "7597702948247830528",
    "ability_coze_outpaint": "7597723984687267840",
    "ability_coze_upscale_8k": "7597760543788630016",
    "ability_coze_tagging_small": "7597767702970630144",
    "ability_coze_tagging_large": "7598080013539213312",
}


def test_shipped_catalog_has_the_eight_workflows() -> None:
    catalog = Catalog.load()
    assert {a.id: a.workflow_id for a in catalog.all()} == WORKFLOWS


def test_shipped_catalog_modes_and_image_fields() -> None:
    catalog = Catalog.load()
    external = {a.id for a in catalog.all() if a.mode == "external_job"}
    assert external == {
        "ability_coze_pattern_extract",
        "ability_coze_image_gen_4step",
        "ability_coze_image_gen_8step",
    }
    outpaint = catalog.get("ability_coze_outpaint")
    assert outpaint is not None
    assert outpaint.image_field == "Url"
    assert all(a.image_field == "url" for a in catalog.all() if a.id != outpaint.id)


def test_catalog_refuses_an_image_field_that_is_not_an_input(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(
        """
abilities:
  - id: x
    displayName: X
    capabilityKey: x
    workflowId: "1"
    imageField: picture
    output: {kind: text}
    inputs: [{name: url, type: string, required: true}]
""",
        encoding="utf-8",
    )
    with pytest.raises(ValidationError, match="imageField"):
        Catalog.load(path)


def test_catalog_refuses_duplicate_ids(tmp_path: Path) -> None:
    entry = """
  - id: same
    displayName: X
    capabilityKey: x
    workflowId: "1"
    output: {kind: text}
    inputs: []
"""
    path = tmp_path / "catalog.yaml"
    path.write_text("abilities:" + entry + entry, encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate ability id"):
        Catalog.load(path)
