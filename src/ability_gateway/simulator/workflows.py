"""The nine published workflows of the ability platform (spec §4): the registry :data:`WORKFLOWS`.

This module owns which workflows exist: each one's id, key, title, start-node parameters (names
are case-sensitive: the outpaint workflow really takes ``Url``) and the behaviour it runs. What a
workflow is (binding and validating a run's ``parameters``, the digest, the failures) is
definition.py's; what each one returns is behaviours.py's. The End-node variables are
``{"output": ...}``:

=====================  =======================  ==============================================
workflow id            key                      output
=====================  =======================  ==============================================
7597535455856295936    prompt_extract           Chinese image-generation prompt (text)
7597530887256801280    pattern_extract          external job id (``job_…``), 1 image
7597701996124045312    image_gen_4step          external job id, 4 images
7597702948247830528    image_gen_8step          external job id, 4 images
7597723984687267840    outpaint                 URL of a PNG: source size + the four expansions
7597760543788630016    upscale_8k               URL of a PNG: longest side = ``bianchang``
7597767702970630144    tagging_small            JSON string ``{"主体":[…],"风格":[…],"颜色":[…]}``
7598080013539213312    tagging_large            JSON string with more categories and tags
7598100000000000001    job_query                JSON string: the state of job ``id``
=====================  =======================  ==============================================
"""

from __future__ import annotations

from ability_gateway.simulator.behaviours import (
    LARGE_TAGS,
    SMALL_TAGS,
    generation_job,
    job_query,
    outpaint,
    prompt_extract,
    tagger,
    upscale,
)
from ability_gateway.simulator.definition import Param, Workflow

__all__ = ["WORKFLOWS"]

_URL = Param("url", "string")
_SIZE = (Param("height", "number"), Param("width", "number"))

_ALL = (
    Workflow(
        "7597535455856295936",
        "prompt_extract",
        "提示词工作流",
        (_URL, Param("shuru", "string", required=False)),
        prompt_extract,
    ),
    Workflow(
        "7597530887256801280",
        "pattern_extract",
        "花纹提取工作流",
        (_URL, *_SIZE, Param("lora", "string", required=False)),
        generation_job("pattern_extract", 1),
    ),
    Workflow(
        "7597701996124045312",
        "image_gen_4step",
        "四部急速生图",
        (_URL, *_SIZE, Param("prompt", "string")),
        generation_job("image_gen_4step", 4),
    ),
    Workflow(
        "7597702948247830528",
        "image_gen_8step",
        "八部急速生图",
        (_URL, *_SIZE, Param("prompt", "string")),
        generation_job("image_gen_8step", 4),
    ),
    Workflow(
        "7597723984687267840",
        "outpaint",
        "扩图多模型版本",
        (
            Param("Url", "string"),
            Param("expand_bottom", "number"),
            Param("expand_left", "number"),
            Param("expand_right", "number"),
            Param("expand_top", "number"),
            Param("moxing", "string", required=False),
        ),
        outpaint,
    ),
    Workflow(
        "7597760543788630016",
        "upscale_8k",
        "8K 高清放大",
        (_URL, Param("bianchang", "number")),
        upscale,
    ),
    Workflow(
        "7597767702970630144",
        "tagging_small",
        "小参数版本图片打标",
        (_URL,),
        tagger(SMALL_TAGS, (600, 1100)),
    ),
    Workflow(
        "7598080013539213312",
        "tagging_large",
        "大参数版本图片打标",
        (_URL,),
        tagger(LARGE_TAGS, (1600, 3200)),
    ),
    Workflow(
        "7598100000000000001",
        "job_query",
        "生成任务查询",
        (Param("id", "string"),),
        job_query,
    ),
)

WORKFLOWS: dict[str, Workflow] = {workflow.workflow_id: workflow for workflow in _ALL}
"""The published workflows by id."""
