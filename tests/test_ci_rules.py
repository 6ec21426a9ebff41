"""The suite's own rule, run for real in a child pytest: in CI a skip is a failure."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import TORCH_MODULES

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py").read_text(encoding="utf-8")
TESTS = """
import pytest

def test_skips():
    pytest.skip("no such program")

def test_needs_a_missing_program():
    from conftest import _program
    _program("bpxl-no-such-program", package="bpxl-no-such-package")

def test_runs():
    assert True
"""


@pytest.mark.parametrize(
    ("ci", "outcomes"),
    [("", {"passed": 1, "skipped": 2}), ("true", {"passed": 1, "failed": 2, "skipped": 0})],
)
def test_skips_fail_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcomes: dict[str, int]
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_rule=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(**outcomes)
    if ci:
        result.stdout.fnmatch_lines(["*skipped in CI*no such program*"])
        result.stdout.fnmatch_lines(["*bpxl-no-such-program is not installed*required in CI*"])


def _imports_torch(node: ast.AST) -> bool:
    """Whether `node` imports PyTorch, or the mnist package, which imports it."""
    names = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [node.module]
    return any(name.split(".")[0] in ("torch", "mnist") for name in names)


def _marked_torch(decorators: list[ast.expr]) -> bool:
    return any(ast.unparse(d) == "pytest.mark.torch" for d in decorators)


def test_every_test_needing_torch_is_marked() -> None:
    """`-m "not torch"` (CI's run without PyTorch) must leave out exactly what needs it: the
    modules that import it as they load (conftest's TORCH_MODULES, marked whole), and every
    other test that imports it inside."""
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        at_load = any(_imports_torch(node) for node in tree.body)
        assert at_load == (path.name in TORCH_MODULES), path.name
        module_marked = any(
            isinstance(node, ast.Assign)
            and [ast.unparse(t) for t in node.targets] == ["pytestmark"]
            and ast.unparse(node.value) == "pytest.mark.torch"
            for node in tree.body
        )
        assert module_marked == at_load, f"{path.name}: pytestmark = pytest.mark.torch"
        if at_load:
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                inside = any(_imports_torch(n) for n in ast.walk(node))
                if inside:
                    assert _marked_torch(node.decorator_list), f"{path.name}::{node.name}"
