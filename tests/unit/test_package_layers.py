"""The package's layers, checked from the source: no import loop between
its parts (a subpackage, or a top-level module), `tetrad.abi` at the
bottom, and no import inside a function but the two kinds that are not
hiding a loop (an optional dependency, the CLI's per-command modules)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "tetrad"
# Imports inside functions that are there for a reason other than a loop.
LAZY = {("containers/cri.py", "tetrad.containers.criapi"),    # needs python3-protobuf >= 3.20
        ("cli/main.py", "tetrad.cli")}                         # only the command's own modules


def part(module: str) -> str:
    """tetrad.policy.compile -> policy; tetrad.daemon -> daemon."""
    return module.split(".")[1]


def imports(path: Path) -> list[tuple[str, bool]]:
    """(tetrad module, inside a function) for each import of the file."""
    tree = ast.parse(path.read_text())
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tetrad."):
            found.append((node.module, id(node) in nested))
        elif isinstance(node, ast.Import):
            found += [(a.name, id(node) in nested) for a in node.names if a.name.startswith("tetrad.")]
    return found


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        src = rel.parts[0].removesuffix(".py")
        for module, _ in imports(path):
            if part(module) != src:
                edges.setdefault(src, set()).add(part(module))
    return edges


def loops(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary cycle's nodes, found from each node by depth-first search."""
    found = set()
    for start in edges:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    found.add(tuple(sorted(path)))
                elif nxt not in path and nxt > start:
                    stack.append((nxt, path + [nxt]))
    return sorted(list(c) for c in found)


def test_no_import_loop_between_the_parts_of_the_package():
    assert loops(graph()) == []


def test_the_loop_finder_finds_a_loop():
    assert loops({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_abi_imports_nothing_else_of_tetrad():
    assert graph().get("abi", set()) == set()


def test_no_import_inside_a_function_hides_a_loop():
    nested = {(str(p.relative_to(ROOT)), m) for p in ROOT.rglob("*.py")
              for m, inside in imports(p) if inside}
    assert {(f, m) for f, m in nested if (f, m.rsplit(".", 1)[0]) not in LAZY and (f, m) not in LAZY} == set()
