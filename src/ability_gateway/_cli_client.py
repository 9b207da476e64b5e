"""The client half of the ``ability-gateway`` command: abilities, invoke, task.

Connection from ``--base-url`` / ``GATEWAY_URL`` and ``--token`` / ``GATEWAY_TOKEN``.
Tables for people, ``--json`` for scripts, one clear line and a non-zero exit on errors.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from ability_gateway import Client, GatewayError, InvokeResult, Task

T = TypeVar("T")

BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", envvar="GATEWAY_URL", help="Gateway URL (env GATEWAY_URL)."),
]
Token = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="GATEWAY_TOKEN", help="API token (env GATEWAY_TOKEN).", show_default=False
    ),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]

abilities_app = typer.Typer(help="List and show abilities.", no_args_is_help=True)
task_app = typer.Typer(help="Show, wait for, cancel and list tasks.", no_args_is_help=True)

# Piped output (scripts, tests) is not cut to 80 columns: ids and URLs stay whole.
out = Console(width=None if sys.stdout.isatty() else 240)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 240)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(1)


@contextmanager
def _client(base_url: str | None, token: str | None) -> Iterator[Client]:
    if not base_url:
        raise _fail("no gateway URL: pass --base-url or set GATEWAY_URL")
    if not token:
        raise _fail("no token: pass --token or set GATEWAY_TOKEN")
    try:
        with Client(base_url, token) as client:
            yield client
    except GatewayError as exc:
        raise _fail(_describe(exc)) from exc
    except (ValueError, OSError) as exc:  # e.g. --image naming a missing or non-image file
        raise _fail(str(exc)) from exc


def _describe(exc: GatewayError) -> str:
    # No status (the gateway did not answer): the message alone.
    parts = [f"{exc.status_code} {exc.message}" if exc.status_code else exc.message]
    code = getattr(exc, "code", None)
    if code is not None and code != exc.status_code:
        parts.append(f"(code {code})")
    errors = getattr(exc, "errors", None) or []
    if errors:
        parts.append("; ".join(f"{e.get('field')}: {e.get('problem')}" for e in errors))
    for name in ("task_id", "debug_url"):
        value = getattr(exc, name, None)
        if value and str(value) not in exc.message:  # a 409 names its task already
            parts.append(f"{name.replace('_', ' ')} {value}")
    if exc.request_id:
        parts.append(f"[request {exc.request_id}]")
    return " ".join(parts)


def _print_json(value: Any) -> None:
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json", by_alias=True)
    elif isinstance(value, list):
        value = [v.model_dump(mode="json", by_alias=True) for v in value]
    sys.stdout.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")


# --- abilities ---------------------------------------------------------------------------


@abilities_app.command("list")
def abilities_list(base_url: BaseUrl = None, token: Token = None, as_json: AsJson = False) -> None:
    """The abilities this gateway offers."""
    with _client(base_url, token) as client:
        abilities = client.list_abilities()
    if as_json:
        _print_json(abilities)
        return
    table = Table("id", "name", "status", "inputs (* required)")
    for ability in abilities:
        fields = ", ".join(
            f"{f.name}{'*' if f.required else ''}" for f in ability.input_schema.fields
        )
        table.add_row(ability.id, ability.display_name, ability.status, fields)
    out.print(table)


@abilities_app.command("show")
def abilities_show(
    ability_id: Annotated[str, typer.Argument(help="The ability's id.")],
    base_url: BaseUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """One ability and its inputs."""
    with _client(base_url, token) as client:
        ability = client.get_ability(ability_id)
    if as_json:
        _print_json(ability)
        return
    out.print(f"[bold]{ability.display_name}[/] ({ability.id}) — {ability.description}")
    table = Table("input", "type", "required", "description")
    for field in ability.input_schema.fields:
        table.add_row(field.name, field.type, "yes" if field.required else "", field.description)
    out.print(table)


# --- invoke and tasks ----------------------------------------------------------------------


def _parse_inputs(pairs: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise _fail(f"bad input {pair!r}: use -i name=value")
        try:
            value: Any = json.loads(raw)  # numbers, true/false, JSON objects
            if isinstance(value, str):
                value = raw
        except json.JSONDecodeError:
            value = raw
        inputs[name] = value
    return inputs


def _waiting(label: str, fn: Callable[[Callable[[str], None]], T]) -> T:
    """Run ``fn`` under a spinner showing the elapsed time and the latest status."""
    started = time.monotonic()
    status_text = ["submitted"]
    with err.status(label) as spinner:

        def update(status: str) -> None:
            status_text[0] = status
            spinner.update(f"{label}: {status} ({time.monotonic() - started:.0f} s)")

        return fn(update)


def _poll(client: Client, task_id: str, timeout: float, update: Callable[[str], None]) -> Task:
    """Poll a task until it ends (backing off from 0.5 s to 5 s), reporting each status."""
    deadline = time.monotonic() + timeout
    interval = 0.5
    while True:
        task = client.get_task(task_id)
        update(task.status)
        if task.status in ("succeeded", "failed", "timeout", "canceled"):
            return task
        if time.monotonic() + interval > deadline:
            raise _fail(f"task {task_id} is still {task.status} after {timeout:g} s")
        time.sleep(interval)
        interval = min(interval * 1.5, 5.0)


def _show_result(result: InvokeResult | Task) -> None:
    if isinstance(result, Task):
        payload = result.result_payload or {}
        texts, images = payload.get("texts", []), payload.get("images", [])
        task_id, status = result.id, result.status
        error = result.error_payload
    else:
        texts, images = result.texts, [i.model_dump(by_alias=True) for i in result.images]
        task_id, status = result.task_id, result.status
        error = None
    colour = {"succeeded": "green", "failed": "red", "timeout": "red", "canceled": "yellow"}
    out.print(f"task [bold]{task_id}[/]: [{colour.get(status, 'cyan')}]{status}[/]")
    for text in texts:
        out.print(text, highlight=False)
    if images:
        table = Table("image", "ossUrl", "sourceUrl")
        for n, image in enumerate(images, 1):
            table.add_row(str(n), str(image.get("ossUrl") or "-"), str(image.get("sourceUrl")))
        out.print(table)
    if error:
        out.print(f"[red]{error.get('code')}: {error.get('message')}[/]", highlight=False)


def invoke(
    ability_id: Annotated[str, typer.Argument(help="The ability's id.")],
    inputs: Annotated[
        list[str] | None, typer.Option("-i", "--input", help="An input, name=value (repeatable).")
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="The image: a file path or an http(s) URL.")
    ] = None,
    callback_url: Annotated[
        str | None, typer.Option("--callback-url", help="Call back here.")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait until the task ends.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="How long --wait waits, in seconds.")] = 600.0,
    base_url: BaseUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Invoke an ability: -i name=value for inputs, --image for the picture."""
    values = _parse_inputs(inputs or [])
    is_url = bool(image) and str(image).startswith(("http://", "https://"))
    with _client(base_url, token) as client:
        invoked = client.invoke_ability(
            ability_id,
            values,
            callback_url=callback_url,
            image_url=image if is_url else None,
            image_path=image if image and not is_url else None,
        )
        result: InvokeResult | Task = invoked
        if wait and invoked.status in ("queued", "running"):
            task_id = invoked.task_id
            result = _waiting(
                f"waiting for {task_id}",
                lambda update: _poll(client, task_id, timeout, update),
            )
    if as_json:
        _print_json(result)
    else:
        _show_result(result)
        if result.status in ("queued", "running"):
            task_id = result.id if isinstance(result, Task) else result.task_id
            err.print(f"it goes on: ability-gateway task wait {task_id}", highlight=False)
    if result.status in ("failed", "timeout", "canceled"):
        raise typer.Exit(1)


@task_app.command("show")
def task_show(
    task_id: Annotated[str, typer.Argument(help="The task's id.")],
    base_url: BaseUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """A task's state and result."""
    with _client(base_url, token) as client:
        task = client.get_task(task_id)
    _print_json(task) if as_json else _show_result(task)


@task_app.command("wait")
def task_wait(
    task_id: Annotated[str, typer.Argument(help="The task's id.")],
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600.0,
    base_url: BaseUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Wait until a task ends, with a spinner; exit 1 unless it succeeded."""
    with _client(base_url, token) as client:
        task = _waiting(
            f"waiting for {task_id}",
            lambda update: _poll(client, task_id, timeout, update),
        )
    _print_json(task) if as_json else _show_result(task)
    if task.status != "succeeded":
        raise typer.Exit(1)


@task_app.command("cancel")
def task_cancel(
    task_id: Annotated[str, typer.Argument(help="The task's id.")],
    base_url: BaseUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Cancel a queued or running task."""
    with _client(base_url, token) as client:
        task = client.cancel_task(task_id)
    _print_json(task) if as_json else _show_result(task)


@task_app.command("list")
def task_list(
    status: Annotated[str | None, typer.Option(help="Only tasks in this status.")] = None,
    ability: Annotated[str | None, typer.Option(help="Only tasks of this ability.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many tasks.")] = 20,
    base_url: BaseUrl = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Your tasks, newest first."""
    with _client(base_url, token) as client:
        tasks: list[Task] = []
        for task in client.list_tasks(status=status, ability_id=ability, page_size=min(limit, 100)):
            tasks.append(task)
            if len(tasks) >= limit:
                break
    if as_json:
        _print_json(tasks)
        return
    table = Table("id", "ability", "status", "created")
    for task in tasks:
        table.add_row(task.id, task.ability_id, task.status, task.create_time.isoformat())
    out.print(table)
