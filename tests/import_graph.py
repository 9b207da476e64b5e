"""The import graph of a package, read statically from its source (nothing is imported).

Every ``import`` statement counts, wherever it stands: at module level, under
``if TYPE_CHECKING:``, or inside a function — a function-local import that dodges a cycle
at run time is still a cycle in the design. ``from x import y`` points at the submodule
``x.y`` when there is one, else at ``x``; relative imports are resolved against the
importing module's package. The implicit import of a module's parent packages is not an
edge (Python always initialises the parents first, so it never closes a loop by itself).

``cycles()`` finds the strongly connected components (iterative Tarjan) and, for each, a
shortest chain through every member, with the line of each import. Run as
``python -m tests.import_graph`` to print the layers of the gateway's server modules.
"""

from __future__ import annotations

import ast
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


@dataclass(frozen=True, slots=True)
class Edge:
    source: str
    target: str
    line: int
    # "module" (top level), "TYPE_CHECKING" or "function" (inside a def / lambda body)
    where: str

    def describe(self) -> str:
        note = "" if self.where == "module" else f", {self.where}"
        return f"{self.source} --(line {self.line}{note})--> {self.target}"


Graph = Mapping[str, list[Edge]]


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` (found under ``root``), by dotted name."""
    modules: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, str]]:
    """Each import statement with where it stands."""
    stack: list[tuple[ast.AST, str]] = [(tree, "module")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, where
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inner = "function"
        else:
            inner = where
        if isinstance(node, ast.If) and _is_type_checking(node.test) and where == "module":
            stack.extend((child, "TYPE_CHECKING") for child in node.body)
            stack.extend((child, inner) for child in node.orelse)
            continue
        stack.extend((child, inner) for child in ast.iter_child_nodes(node))


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _known_prefix(name: str, modules: Mapping[str, Path]) -> str | None:
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph(root: Path, package: str) -> dict[str, list[Edge]]:
    """module -> the imports it makes of other modules of ``package``."""
    modules = module_files(root, package)
    graph: dict[str, list[Edge]] = {name: [] for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, where in _imports(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if (found := _known_prefix(alias.name, modules)) is not None:
                        targets.append(found)
            else:
                if node.level:
                    base_parts = _package_of(name, path).split(".")
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                    base = ".".join([*base_parts, *([node.module] if node.module else [])])
                else:
                    base = node.module or ""
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in modules:
                        targets.append(sub)
                    elif (found := _known_prefix(base, modules)) is not None:
                        targets.append(found)
            for target in targets:
                if target != name or isinstance(node, ast.Import):
                    graph[name].append(Edge(name, target, node.lineno, where))
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm, iteratively (no recursion limit): the components, each sorted,
    in the order Tarjan completes them (a component before any that imports it)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    # The DFS path, each node with the imports it has still to follow.
    work: list[tuple[str, Iterator[str]]] = []

    def enter(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        targets = sorted({e.target for e in graph.get(node, ()) if e.target in graph})
        work.append((node, iter(targets)))

    for start in sorted(graph):
        if start in index:
            continue
        enter(start)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    enter(target)
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _shortest_cycle(graph: Graph, start: str, within: set[str]) -> list[Edge]:
    """The shortest chain of imports from ``start`` back to itself, inside ``within``."""
    came_by: dict[str, Edge] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for edge in sorted(graph[node], key=lambda e: (e.target, e.line)):
            if edge.target not in within:
                continue
            if edge.target == start:
                chain = [edge]
                while chain[0].source != start:
                    chain.insert(0, came_by[chain[0].source])
                return chain
            if edge.target not in came_by:
                came_by[edge.target] = edge
                queue.append(edge.target)
    raise AssertionError(f"{start} is on no cycle")  # not reached for a component member


def cycles(graph: Graph) -> list[list[Edge]]:
    """Chains of imports that close a loop: for each strongly connected component, enough
    shortest cycles to pass through every member (an empty list: the graph is acyclic)."""
    found: list[list[Edge]] = []
    for component in strongly_connected(graph):
        members = set(component)
        if len(component) == 1:
            (only,) = component
            self_loops = [e for e in graph[only] if e.target == only]
            found.extend([edge] for edge in self_loops[:1])
            continue
        covered: set[str] = set()
        for member in component:
            if member not in covered:
                chain = _shortest_cycle(graph, member, members)
                covered.update(edge.source for edge in chain)
                found.append(chain)
    return found


def describe(chains: Iterable[list[Edge]]) -> str:
    lines: list[str] = []
    for number, chain in enumerate(chains, 1):
        loop = " -> ".join([*(e.source for e in chain), chain[0].source])
        lines.append(f"cycle {number}: {loop}")
        lines.extend(f"    {edge.describe()}" for edge in chain)
    return "\n".join(lines)


def layers(graph: Graph, top: str = "ability_gateway.server") -> list[list[str]]:
    """The modules under ``top`` (named relative to it) in layers: each imports only from
    the layers before it (its depth is its longest chain of imports within ``top``; the
    members of a cycle, if any, share one layer)."""
    inside = {m: [e for e in edges if e.target.startswith(top + ".")] for m, edges in graph.items()}
    inside = {m: edges for m, edges in inside.items() if m.startswith(top + ".")}
    level: dict[str, int] = {}
    for component in strongly_connected(inside):  # what a component imports comes first
        members = set(component)
        depth = max(
            (
                level[e.target] + 1
                for m in component
                for e in inside[m]
                if e.target not in members and e.target in level
            ),
            default=0,
        )
        level.update(dict.fromkeys(component, depth))
    rows: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for module, depth in level.items():
        rows[depth].append(module.removeprefix(top + "."))
    return [sorted(row) for row in rows]


def main() -> None:
    graph = import_graph(SRC, "ability_gateway")
    found = cycles(graph)
    if found:
        sys.stdout.write(describe(found) + "\n\n")
    for depth, row in enumerate(layers(graph)):
        shown = [m for m in row if not m.startswith("migrations.versions.")]  # each on its own
        sys.stdout.write(f"layer {depth}: {', '.join(shown)}\n")


if __name__ == "__main__":
    main()
