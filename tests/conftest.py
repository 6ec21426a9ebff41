"""Shared fixtures: real outside programs and the real MNIST files, never mocks.

One rule for every test that needs something from outside Python (LibreOffice, poppler's
pdftoppm/pdftotext, Gnumeric's ssconvert, the MNIST files): outside CI it skips and says what is
missing; in CI (CI=true) it fails instead, so a green CI run has really used every one of them.
`.ci/run` installs the Debian package named in each fixture. In CI a skip of any other kind
fails too, so the last pytest line there always reports 0 skipped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _missing(why: str) -> None:
    if IN_CI:
        pytest.fail(f"{why} (required in CI)")
    pytest.skip(why)


def _program(*names: str, package: str) -> str:
    """Path of the first of `names` on PATH; skipped outside CI, failed in CI when none is."""
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    _missing(f"{names[0]} is not installed (Debian package {package})")
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def soffice() -> str:
    """Path of the LibreOffice binary used for real recalculation."""
    return _program("soffice", "libreoffice", package="libreoffice-calc-nogui")


@pytest.fixture(scope="session")
def pdftoppm() -> str:
    """poppler's PDF rasteriser, which turns LibreOffice's PDF export into PNG pictures."""
    return _program("pdftoppm", package="poppler-utils")


@pytest.fixture(scope="session")
def pdftotext() -> str:
    """poppler's PDF text extractor, to read what a rendered page shows."""
    return _program("pdftotext", package="poppler-utils")


@pytest.fixture(scope="session")
def ssconvert() -> str:
    """Gnumeric's command-line converter: a second, independent spreadsheet engine."""
    return _program("ssconvert", package="gnumeric")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder with the four MNIST IDX files, from the MNIST_DATA environment variable."""
    value = os.environ.get("MNIST_DATA")
    if not value:
        _missing("MNIST_DATA is not set")
    path = Path(value).resolve()
    if not path.is_dir():
        _missing(f"MNIST_DATA={value} is not a folder")
    return path


@pytest.fixture(scope="session")
def students_dir() -> Path:
    """The course's 25 student workbooks: STUDENTS_DATA, by default ../shared/data/students
    beside the clone (read there, never copied into the repository)."""
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "students"
    path = Path(os.environ.get("STUDENTS_DATA") or default)
    if not (path / "01_senthilva_ERA1.xlsx").is_file():
        _missing(f"the student workbooks are not in {path} (set STUDENTS_DATA)")
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """In CI a skipped test is a failed test: nothing may silently not run there."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"
