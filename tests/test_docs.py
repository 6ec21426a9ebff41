"""The manual keeps its promises: CI runs the README's test command, and every link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _commands(markdown: str) -> list[str]:
    """The lines of the bash blocks of a Markdown text."""
    blocks = re.findall(r"^```bash\n(.*?)^```", markdown, re.S | re.M)
    return [line for block in blocks for line in block.splitlines()]


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(m[1]) for m in re.finditer(r"^#+ (.*)$", text, re.M)}


def test_ci_runs_the_readme_test_command() -> None:
    """.ci/run holds the README's test command as one of its lines, word for word."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    readme = [
        c for c in _commands((ROOT / "README.md").read_text(encoding="utf-8")) if "pytest" in c
    ]
    assert readme, "the README shows no test command"
    assert any(c in ci for c in readme), f"none of {readme} is a line of .ci/run"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    broken = []
    for link in LINK.findall(text):
        if re.match(r"[a-z]+:", link):
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and (target.suffix != ".md" or anchor not in _anchors(target)):
            broken.append(f"{link}: no such heading")
    assert not broken, broken


def test_every_package_ships() -> None:
    """A package left out of pyproject's list works in an editable install and breaks in a
    normal one (`pip install .`): every folder with an __init__.py is in the list."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("backprop_xlsx", "mnist")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)
