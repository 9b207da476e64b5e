"""What each published workflow returns: the per-workflow behaviours and the text they compose.

This module owns the output builders that workflows.py's registry pairs with each workflow id:
the prompt extractor (a Chinese image-generation prompt), the two taggers (a JSON string of tags
per category), outpaint and upscale (the URL of a generated PNG of the computed size), the three
generation workflows (which start an external job, see jobs.py, and return its id) and the job
query, plus the vocabulary the text outputs are drawn from. Outputs are deterministic: every
choice comes from :meth:`Inputs.rng`, seeded by the inputs' digest, never from the process-wide
random state. The one exception is a job id, which is unique per run like a real job queue's; the
images the job will produce (and whether it fails, see jobs.py) are still derived from the digest.

Every behaviour but the query first looks at its source image, as the real workflows download
it: one that cannot be fetched or parsed fails the run with :class:`WorkflowFailure` (Coze code
720701013).

The query workflow ("生成任务查询") takes one string ``id``, the external job id, and answers
``output`` = a JSON string (so ``data`` is double-encoded, as for tagging) of the job's report::

    {"id": "job_…", "status": "running" | "succeeded" | "failed", "progress": 0..100,
     "images": [absolute PNG URLs], "texts": ["花纹提取完成" | "图片生成完成"], "error": null | "…"}

``images``/``texts`` are empty unless succeeded and ``error`` is ``null`` unless failed; image URLs
are on this run's base URL (``public_url`` or the request's origin). An unknown id fails the run:
720701013 "Workflow execution failure: job <id> not found".
"""

from __future__ import annotations

from collections.abc import Mapping

from ability_gateway.simulator.definition import (
    Behaviour,
    Inputs,
    Outcome,
    RunContext,
    WorkflowFailure,
)
from ability_gateway.simulator.png import MAX_SIDE
from ability_gateway.simulator.protocol import dumps
from ability_gateway.simulator.runs import Usage

__all__ = [
    "LARGE_TAGS",
    "MAX_UPSCALE_SIDE",
    "SMALL_TAGS",
    "generation_job",
    "job_query",
    "outpaint",
    "prompt_extract",
    "tagger",
    "upscale",
]

MAX_UPSCALE_SIDE = 8192

# --------------------------------------------------------------------------------------------
# Vocabulary the text outputs are composed from.

_SUBJECTS = (
    "一位身穿淡青色汉服的少女",
    "一只慵懒的橘猫",
    "一座雪山脚下的小木屋",
    "一杯冒着热气的拿铁咖啡",
    "一位在雨中撑着红伞的行人",
    "一片盛开的樱花林",
    "一辆复古红色敞篷跑车",
    "一座充满未来感的城市天际线",
    "一只展翅飞翔的白鹤",
    "一盘摆盘精致的日式料理",
    "一位踩着滑板的街头少年",
    "一艘停泊在港湾的白色帆船",
)
_SCENES = (
    "置身于洒满阳光的窗台上",
    "背景是虚化的城市街景",
    "四周是薄雾笼罩的山谷",
    "在黄昏时分的海边",
    "在霓虹闪烁的夜晚街头",
    "在古色古香的江南庭院中",
    "在极简风格的白色摄影棚内",
    "在秋日落叶铺满的林间小径上",
)
_LIGHTING = (
    "柔和的午后自然光",
    "金色的逆光与发丝轮廓光",
    "电影感的侧光",
    "清晨的柔光",
    "霓虹灯带来的冷暖对比光",
    "均匀的柔光箱棚拍照明",
)
_STYLES = (
    "日系小清新摄影风格",
    "电影感胶片质感",
    "中国风水墨画风格",
    "赛博朋克风格",
    "写实主义摄影",
    "吉卜力动画风格",
    "厚涂油画质感",
    "极简主义商业摄影",
)
_PALETTES = (
    "温暖的橙黄色调",
    "清冷的蓝绿色调",
    "低饱和度的莫兰迪色系",
    "高对比度的黑金配色",
    "梦幻的粉紫色调",
    "自然的大地色系",
)
_CAMERA = ("浅景深", "广角镜头", "85mm 人像镜头", "俯拍视角", "平视视角", "微距特写")
_QUALITY = "细节丰富，8K 超高清，杰作，最佳画质"

_TAGS: dict[str, tuple[str, ...]] = {
    "主体": (
        "人物",
        "少女",
        "猫",
        "建筑",
        "风景",
        "美食",
        "汽车",
        "花卉",
        "鸟类",
        "城市",
        "帆船",
        "饮品",
    ),
    "风格": ("写实", "插画", "国风", "赛博朋克", "日系", "油画", "水彩", "极简", "复古", "动漫"),
    "颜色": (
        "红色",
        "橙色",
        "黄色",
        "绿色",
        "青色",
        "蓝色",
        "紫色",
        "粉色",
        "白色",
        "黑色",
        "金色",
        "灰色",
    ),
    "场景": ("室内", "户外", "海边", "山林", "街道", "庭院", "摄影棚", "夜景", "雪景", "田野"),
    "光线": ("自然光", "逆光", "侧光", "柔光", "霓虹光", "顶光"),
    "构图": ("居中构图", "三分法构图", "对称构图", "引导线构图", "留白构图", "特写"),
    "情绪": ("温馨", "宁静", "活力", "神秘", "浪漫", "孤独", "欢快", "怀旧"),
    "用途": ("海报", "壁纸", "电商主图", "社交媒体", "插画素材", "包装设计"),
}
SMALL_TAGS = {"主体": 2, "风格": 1, "颜色": 3}
LARGE_TAGS = {
    "主体": 3,
    "场景": 2,
    "风格": 2,
    "颜色": 4,
    "光线": 1,
    "构图": 1,
    "情绪": 2,
    "用途": 2,
}


def _orientation(width: int, height: int) -> str:
    if width * 10 > height * 11:
        return "横幅构图"
    if height * 10 > width * 11:
        return "竖幅构图"
    return "方形居中构图"


# --------------------------------------------------------------------------------------------
# The behaviours.


async def prompt_extract(inputs: Inputs, context: RunContext) -> Outcome:
    """A Chinese image-generation prompt for the source image, led by the optional ``shuru``."""
    width, height = await context.image_size(inputs.text("url"))
    rng = inputs.rng()
    parts = [
        rng.choice(_SUBJECTS),
        rng.choice(_SCENES),
        rng.choice(_LIGHTING),
        rng.choice(_PALETTES),
        rng.choice(_STYLES),
        rng.choice(_CAMERA),
        f"{_orientation(width, height)}（{width}×{height}）",
        _QUALITY,
    ]
    wish = inputs.text("shuru").strip()
    if wish:
        parts.insert(0, wish)
    prompt = "，".join(parts)
    usage = Usage(
        input_count=rng.randint(1200, 2600), output_count=len(prompt) + rng.randint(40, 120)
    )
    return Outcome({"output": prompt}, usage)


def tagger(counts: Mapping[str, int], input_range: tuple[int, int]) -> Behaviour:
    """A tagger: ``counts[category]`` tags per category as a JSON string, input tokens in range."""

    async def tag(inputs: Inputs, context: RunContext) -> Outcome:
        await context.image_size(inputs.text("url"))
        rng = inputs.rng()
        tags = {category: rng.sample(_TAGS[category], k) for category, k in counts.items()}
        text = dumps(tags)
        usage = Usage(
            input_count=rng.randint(*input_range), output_count=len(text) + rng.randint(10, 60)
        )
        return Outcome({"output": text}, usage)

    return tag


async def outpaint(inputs: Inputs, context: RunContext) -> Outcome:
    """The URL of a PNG of the source's size plus the four expansions (``moxing`` 1, 2 or 3)."""
    width, height = await context.image_size(inputs.text("Url"))
    model = inputs.text("moxing").strip() or "1"
    if model not in ("1", "2", "3"):
        raise WorkflowFailure(f"unsupported moxing {model!r}, expected 1, 2 or 3")
    sides = {side: inputs.integer(f"expand_{side}") for side in ("top", "bottom", "left", "right")}
    negative = [side for side, pixels in sides.items() if pixels < 0]
    if negative:
        raise WorkflowFailure(f"expand_{negative[0]} must not be negative")
    new_width = width + sides["left"] + sides["right"]
    new_height = height + sides["top"] + sides["bottom"]
    if new_width > MAX_SIDE or new_height > MAX_SIDE:
        raise WorkflowFailure(
            f"outpainted image {new_width}x{new_height} exceeds {MAX_SIDE} pixels per side"
        )
    url = context.file_url(new_width, new_height, f"outpaint-{inputs.digest[:24]}")
    return Outcome({"output": url}, Usage())


async def upscale(inputs: Inputs, context: RunContext) -> Outcome:
    """The URL of a PNG whose longest side is ``bianchang``, the source's aspect kept."""
    width, height = await context.image_size(inputs.text("url"))
    side = inputs.integer("bianchang")
    if not 1 <= side <= MAX_UPSCALE_SIDE:
        raise WorkflowFailure(f"bianchang must be between 1 and {MAX_UPSCALE_SIDE}, got {side}")
    if width >= height:
        new_width, new_height = side, max(1, round(height * side / width))
    else:
        new_width, new_height = max(1, round(width * side / height)), side
    url = context.file_url(new_width, new_height, f"upscale-{inputs.digest[:24]}")
    return Outcome({"output": url}, Usage())


def generation_job(kind: str, image_count: int) -> Behaviour:
    """A generation workflow: starts a job of ``image_count`` images and returns its id."""

    async def start_job(inputs: Inputs, context: RunContext) -> Outcome:
        source_url = inputs.text("url")
        await context.image_size(source_url)
        width, height = inputs.integer("width"), inputs.integer("height")
        for name, value in (("width", width), ("height", height)):
            if not 1 <= value <= MAX_SIDE:
                raise WorkflowFailure(f"{name} must be between 1 and {MAX_SIDE}, got {value}")
        job = context.jobs.create(
            workflow_id=inputs.workflow_id,
            kind=kind,
            width=width,
            height=height,
            image_count=image_count,
            digest=inputs.digest,
            prompt=inputs.text("prompt"),
            source_url=source_url,
            base_url=context.base_url,
        )
        return Outcome({"output": job.job_id}, Usage())

    return start_job


async def job_query(inputs: Inputs, context: RunContext) -> Outcome:
    """The report of job ``id`` as a JSON string (see the module docstring)."""
    job_id = inputs.text("id")
    job = context.jobs.get(job_id)
    if job is None:
        raise WorkflowFailure(f"job {job_id} not found")
    return Outcome({"output": dumps(context.jobs.report(job, context.base_url))}, Usage())
