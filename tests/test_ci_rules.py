"""The suite's own rule, run for real in a child pytest: in CI a skip is a failure."""

from __future__ import annotations

from pathlib import Path

import pytest

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
