"""The ``ability-gateway`` command: the root app that gathers every command group.

This module owns :data:`app`, the Typer application, and :func:`main`, the console script
(``ability_gateway.cli:main`` in pyproject.toml, and ``python -m ability_gateway``); the
commands live in the ``_cli_*`` modules: ``coze-sim`` in ``_cli_simulator``, ``serve``,
``worker`` and ``migrate`` in ``_cli_server``, ``token`` in ``_cli_tokens``, ``demo`` in
``_cli_demo``, and the client commands ``invoke``, ``abilities`` and ``task`` in
``_cli_client``. Server-side imports happen inside the commands so that the SDK part of the
package stays importable with only httpx + pydantic installed.
"""

from __future__ import annotations

import typer

from ability_gateway._cli_client import abilities_app, invoke, task_app
from ability_gateway._cli_demo import demo
from ability_gateway._cli_server import migrate, serve, worker
from ability_gateway._cli_simulator import coze_sim
from ability_gateway._cli_tokens import token_app

app = typer.Typer(
    name="ability-gateway",
    help="Ability Gateway: one stable REST API over Coze workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# `--help` lists the commands, then the groups, each in the order registered here.
app.command("coze-sim")(coze_sim)
app.add_typer(token_app, name="token")
app.command()(serve)
app.command()(worker)
app.command()(migrate)
app.command()(demo)
# The client commands need the SDK only; a missing server extra must not hide them.
app.add_typer(abilities_app, name="abilities")
app.add_typer(task_app, name="task")
app.command("invoke")(invoke)


def main() -> None:
    app()
