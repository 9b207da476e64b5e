"""Imports point one way: no module of the package imports itself back, however long the
chain, counting imports under ``if TYPE_CHECKING:`` and inside functions (tests/import_graph.py
reads them from the source). And the layers docs/architecture.md draws hold where they
matter most: the job queue and the Coze client know no domain."""

from __future__ import annotations

import textwrap
from itertools import pairwise
from pathlib import Path

import pytest

from tests.import_graph import SRC, Graph, cycles, describe, import_graph

SERVER = "ability_gateway.server"
DOMAINS = (
    "abilities",
    "apidocs",
    "auth",
    "callbacks",
    "executors",
    "health",
    "media",
    "provider_callbacks",
    "tasks",
)
# The composition of the process, above every domain.
ROOTS = ("app", "deps", "lifecycle", "state")


def assert_acyclic(graph: Graph) -> None:
    found = cycles(graph)
    assert not found, "import cycles (break each; a lazy import is not a fix):\n" + describe(found)


def reachable(graph: Graph, start: str) -> dict[str, list[str]]:
    """Every module ``start`` imports, directly or not, with one chain that gets there."""
    chains = {start: [start]}
    todo = [start]
    while todo:
        node = todo.pop()
        for edge in graph[node]:
            if edge.target not in chains:
                chains[edge.target] = [*chains[node], edge.target]
                todo.append(edge.target)
    return chains


def under(module: str, *names: str) -> bool:
    return any(module == f"{SERVER}.{n}" or module.startswith(f"{SERVER}.{n}.") for n in names)


def write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(SRC, "ability_gateway")


def test_the_package_has_no_import_cycle(graph: Graph) -> None:
    assert f"{SERVER}.runner.runner" in graph  # the graph is of the real source
    assert_acyclic(graph)


def test_the_runner_reaches_no_domain_and_not_the_gateway_state(graph: Graph) -> None:
    for module in [m for m in graph if under(m, "runner")]:
        for target, chain in reachable(graph, module).items():
            assert not under(target, *DOMAINS, "providers", *ROOTS), " -> ".join(chain)


def test_the_coze_client_reaches_no_domain(graph: Graph) -> None:
    for module in [m for m in graph if under(m, "providers")]:
        for target, chain in reachable(graph, module).items():
            assert not under(target, *DOMAINS, "runner", *ROOTS), " -> ".join(chain)


def test_a_cycle_through_type_checking_and_a_function_import_fails(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg import b\n",
            "pkg/b.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from .sub.c import Thing
                """,
            "pkg/sub/__init__.py": "",
            "pkg/sub/c.py": """\
                class Thing:
                    def later(self):
                        from .. import a
                        return a
                """,
            "pkg/d.py": "import pkg.a\n",  # leads into the cycle, is not on it
        },
    )
    graph = import_graph(tmp_path, "pkg")
    (chain,) = cycles(graph)
    assert [(e.source, e.target, e.where) for e in chain] == [
        ("pkg.a", "pkg.b", "module"),
        ("pkg.b", "pkg.sub.c", "TYPE_CHECKING"),
        ("pkg.sub.c", "pkg.a", "function"),
    ]
    with pytest.raises(AssertionError, match=r"cycle 1: pkg\.a -> pkg\.b -> pkg\.sub\.c -> pkg\.a"):
        assert_acyclic(graph)


def test_every_member_of_a_tangle_is_on_a_reported_cycle(tmp_path: Path) -> None:
    # Two loops sharing m: x -> m -> x and m -> y -> z -> m.
    write_package(
        tmp_path,
        {
            "p/__init__.py": "",
            "p/m.py": "import p.x\nfrom p import y\n",
            "p/x.py": "from p.m import name\n",
            "p/y.py": "from . import z\n",
            "p/z.py": "from .m import name\n",
        },
    )
    found = cycles(import_graph(tmp_path, "p"))
    on_a_cycle = {edge.source for chain in found for edge in chain}
    assert on_a_cycle == {"p.m", "p.x", "p.y", "p.z"}
    for chain in found:
        assert chain[-1].target == chain[0].source  # each closes its loop
        assert all(a.target == b.source for a, b in pairwise(chain))


def test_a_package_whose_imports_point_one_way_passes(tmp_path: Path) -> None:
    write_package(
        tmp_path,
        {
            "q/__init__.py": "from q.top import run\n",
            "q/top.py": "from q import low\nfrom q.mid import helper\n",
            "q/mid.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from q import low
                """,
            "q/low.py": "import os\n",
        },
    )
    graph = import_graph(tmp_path, "q")
    assert {e.target for e in graph["q.top"]} == {"q.low", "q.mid"}
    assert_acyclic(graph)


def test_endpoints_are_imported_only_by_the_app_and_deps_only_by_endpoints(graph: Graph) -> None:
    for module, edges in graph.items():
        for edge in edges:
            if edge.target.endswith(".endpoints"):
                assert module == f"{SERVER}.app", edge.describe()
            if edge.target == f"{SERVER}.deps":
                assert module.endswith(".endpoints"), edge.describe()
