"""The layering docs/architecture.md draws, held by the imports themselves: `xlsx` knows nothing
of networks, `cnn` needs no torch, and no module imports one that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("backprop_xlsx", "mnist")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function, relative ones resolved."""
    name = _module(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}
    return out


GRAPH = {_module(p): _imports(p) for top in PACKAGES for p in sorted((ROOT / top).rglob("*.py"))}


def _inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("backprop_xlsx.xlsx", ("backprop_xlsx.mlp", "backprop_xlsx.cnn", "backprop_xlsx.verify",
                                "backprop_xlsx.handmade", "mnist", "torch")),
        ("backprop_xlsx.cnn", ("torch", "torchvision", "mnist", "backprop_xlsx.mlp",
                               "backprop_xlsx.verify", "backprop_xlsx.handmade")),
        ("backprop_xlsx.report", ("backprop_xlsx.mlp", "backprop_xlsx.cnn", "backprop_xlsx.verify",
                                  "backprop_xlsx.handmade", "torch")),
        ("backprop_xlsx.mlp", ("backprop_xlsx.verify", "backprop_xlsx.handmade",
                               "backprop_xlsx.cnn", "backprop_xlsx.report", "torch", "mnist")),
        ("backprop_xlsx.verify", ("backprop_xlsx.handmade", "torch", "mnist")),
    ],
)  # fmt: skip
def test_a_layer_imports_nothing_above_it(package: str, forbidden: tuple[str, ...]) -> None:
    """Directly or through another module: `cnn` importing a module that imports torch would
    need torch as much as importing it itself."""
    wrong = sorted(
        f"{module} reaches {target}"
        for module in GRAPH
        if _inside(module, package)
        for target in _reached(module)
        if any(_inside(target, f) for f in forbidden)
    )
    assert not wrong, wrong


def _reached(start: str) -> set[str]:
    """Every module `start` imports, and every one those import, to the end."""
    seen, todo = set(), [start]
    while todo:
        for target in GRAPH.get(todo.pop(), ()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first search meets, each as the path that closes it."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycles.append([*path[path.index(t) :], t])
            elif t not in state:
                visit(t, [*path, t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    return cycles


def test_no_module_imports_itself_back() -> None:
    edges = {m: {t for t in targets if t in GRAPH and t != m} for m, targets in GRAPH.items()}
    assert not _cycles(edges)


def test_no_room_imports_another_back() -> None:
    """The same over rooms (backprop_xlsx.verify, .cnn, …, mnist): verify may run cnn's check,
    but then nothing in cnn may import verify, directly or round another room."""

    def room(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if parts[0] == "backprop_xlsx" else parts[0]

    edges: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        edges.setdefault(room(module), set()).update(
            room(t) for t in targets if t in GRAPH and room(t) != room(module)
        )
    assert not _cycles(edges)
