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
    "bad_number": ("Not a positive whole number:", "不是正整数："),
    "shown_once": ("Copy it now: it is shown only once", "请立即复制：只显示这一次"),
    "shown_once_help": (
        "The gateway keeps only its hash; a lost value cannot be shown again (rotate instead).",
        "网关只保存其哈希；丢失后无法再次查看（请轮换）。",
    ),
    "callback_secret": ("Callback signing secret", "回调签名密钥"),
    "create_token": ("Create a token", "创建令牌"),
    "name": ("Name", "名称"),
    "expires_days": ("Expires in (days)", "有效期（天）"),
    "rate_limit": ("Requests / minute", "每分钟请求数"),
    "max_concurrent": ("Unfinished tasks at most", "最多未完成任务"),
    "daily_quota": ("Invocations / day", "每日调用配额"),
    "media_quota": ("Media bytes", "媒体存储字节"),
    "last_used": ("Last used", "最近使用"),
    "limits": ("Limits and quotas", "限制与配额"),
    "old_value_until": ("old value works until", "旧值有效至"),
    "save": ("Save", "保存"),
    "overlap": ("Old value works for", "旧值保留"),
    "rotate": ("Rotate", "轮换"),
    "revoke": ("Revoke", "吊销"),
    "executors": ("Executors", "执行账号"),
    "circuit": ("Circuit", "熔断状态"),
    "in_flight": ("In flight", "进行中"),
    "running_tasks": ("running tasks", "运行中任务"),
    "last_hour": ("Calls, last hour", "近一小时调用"),
    "failures": ("failures", "失败"),
    "weight": ("weight", "权重"),
    "dead_letter": ("Callbacks", "回调"),
    "dead_letter_help": (
        "Deliveries that gave up (exhausted) or whose receiver said 410 Gone.",
        "已放弃投递（重试耗尽）或接收方返回 410 Gone 的回调。",
    ),
    "redeliver_selected": ("Redeliver the selected", "重新投递所选"),
    "no_dead_letter": ("No failed callbacks.", "没有失败的回调。"),
    "last_answer": ("Last answer", "最后响应"),
    "usage": ("Usage", "用量"),
    "days": ("days", "天"),
    "calls_per_day": ("Calls and success rate per day", "每日调用量与成功率"),
    "calls": ("Calls", "调用"),
    "success_rate": ("Success %", "成功率 %"),
    "by_ability_day": ("By day and ability", "按日期与能力"),
    "by_token": ("By token", "按令牌"),
    "day": ("Day", "日期"),
    "cache_hits": ("Cache hits", "缓存命中"),
    "since": ("From", "起始"),
    "until": ("To", "截止"),
    "quotas": ("Quotas", "配额"),
    "used_today": ("used today", "今日已用"),
    "no_usage": ("No calls in the last 14 days.", "近 14 天没有调用。"),
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
