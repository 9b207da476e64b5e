"""The console's words in English and Chinese, and which one a request gets.

The language is the ``agw_lang`` cookie when the user chose one (the switch in the page
header), else the first of ``zh``/``en`` in ``Accept-Language``, else English. A key without
a translation shows the key, so a missing word is visible, not blank.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

LANG_COOKIE = "agw_lang"
LANGUAGES = ("en", "zh")

# key: (English, Chinese)
WORDS: dict[str, tuple[str, str]] = {
    "console": ("Ability Gateway console", "能力网关控制台"),
    "sign_in": ("Sign in", "登录"),
    "sign_out": ("Sign out", "退出"),
    "token": ("Gateway token", "网关令牌"),
    "token_help": (
        "An admin or app token (agw_…). It is checked once; the browser keeps only a "
        "session cookie.",
        "管理员或应用令牌（agw_…）。只在登录时校验一次，浏览器只保存会话 Cookie。",
    ),
    "wrong_token": ("That token is invalid, revoked or expired.", "令牌无效、已吊销或已过期。"),
    "signed_in_as": ("Signed in as", "当前身份"),
    "admin": ("admin", "管理员"),
    "app": ("app", "应用"),
    "abilities": ("Abilities", "能力"),
    "tasks": ("Tasks", "任务"),
    "tokens": ("Tokens", "令牌"),
    "playground": ("Playground", "调试台"),
    "run": ("Run", "运行"),
    "run_async": (
        "Run asynchronously (202, then follow the task)",
        "异步运行（先返回 202，再跟踪任务）",
    ),
    "callback_url": ("Callback URL (optional)", "回调地址（可选）"),
    "image_url": ("Image URL", "图片地址"),
    "image_file": ("…or upload an image", "……或上传图片"),
    "image_help": (
        "A URL the workflow can fetch, or a file sent as imageBase64.",
        "工作流能访问到的地址，或上传文件（以 imageBase64 发送）。",
    ),
    "required": ("required", "必填"),
    "optional": ("optional", "可选"),
    "choose": ("(default)", "（默认）"),
    "mode": ("Mode", "模式"),
    "timeout": ("Timeout", "超时"),
    "status": ("Status", "状态"),
    "ability": ("Ability", "能力"),
    "created": ("Created", "创建时间"),
    "duration": ("Duration", "耗时"),
    "search": ("Task, request or job id", "任务、请求或作业 ID"),
    "filter": ("Filter", "筛选"),
    "any": ("any", "全部"),
    "next_page": ("Next page", "下一页"),
    "no_tasks": ("No tasks yet.", "暂无任务。"),
    "result": ("Result", "结果"),
    "texts": ("Texts", "文本"),
    "tags": ("Tags", "标签"),
    "images": ("Images", "图片"),
    "error": ("Error", "错误"),
    "task": ("Task", "任务"),
    "open_task": ("Open the task", "查看任务"),
    "still_running": ("Still running: this updates by itself.", "仍在运行，本页会自动刷新。"),
    "same_request": ("The same request", "等价请求"),
    "inputs": ("Inputs", "输入"),
    "outputs": ("Outputs", "输出"),
    "timeline": ("Timeline", "时间线"),
    "call_logs": ("Coze calls", "Coze 调用"),
    "executor": ("Executor", "执行账号"),
    "operation": ("Operation", "操作"),
    "http_status": ("HTTP", "HTTP"),
    "coze_code": ("Coze code", "Coze 错误码"),
    "attempt": ("Attempt", "尝试"),
    "media": ("Stored media", "已存媒体"),
    "callback": ("Callback", "回调"),
    "no_callback": ("No callback URL.", "未设置回调地址。"),
    "answer": ("Receiver's answer", "接收方响应"),
    "cancel": ("Cancel", "取消"),
    "redeliver": ("Redeliver the callback", "重新投递回调"),
    "accepted": ("accepted", "已接收"),
    "ended": ("ended", "已结束"),
    "forbidden": ("This page is for admin tokens.", "此页面仅限管理员令牌。"),
    "not_found": ("Not found.", "未找到。"),
    "bad_form": (
        "The form is out of date: reload the page and try again.",
        "表单已过期，请刷新页面后重试。",
    ),
    "language": ("中文", "English"),
}


def language_of(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in LANGUAGES:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";", 1)[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "en"


def translator(lang: str) -> Callable[[str], str]:
    index = 1 if lang == "zh" else 0

    def t(key: str) -> str:
        pair = WORDS.get(key)
        return key if pair is None else pair[index]

    return t
