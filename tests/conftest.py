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
from hypothesis import settings

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
ROOT = Path(__file__).resolve().parents[1]

# Property tests (tests/test_properties.py): no deadline (a first call imports torch or starts
# LibreOffice); in CI the same examples every run, so a red CI is reproducible, and no example
# database. HYPOTHESIS_PROFILE=thorough draws ten times as many examples, to hunt for bugs.
settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, database=None, print_blob=True)
settings.register_profile("thorough", deadline=None, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if IN_CI else "dev"))


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
def ooxml_validate() -> list[str]:
    """The command of Microsoft's Open XML SDK validator (npm @ooxml-tools/validate, run by Node
    as WebAssembly, offline), installed from .ci/ooxml's lock file as `.ci/run` does."""
    node = _program("node", package="nodejs")
    script = ROOT / ".ci" / "ooxml" / "node_modules" / ".bin" / "ooxml-validate"
    if not script.is_file():
        _missing("ooxml-validate is not installed (run: npm ci --prefix .ci/ooxml)")
    return [node, str(script)]


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


# Test modules that import PyTorch (or the mnist package, which does) as they load. A run that
# deselects the `torch` marker (`-m "not torch"`, as CI's run on the lowest numpy, which installs
# bpxl without the mnist extra) does not import them at all; every test in them carries the
# marker, and test_ci_rules.py checks that this list and the imports agree.
TORCH_MODULES = frozenset({"test_dropout.py", "test_mnist.py", "test_netsheet.py"})


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Leave the torch modules unimported when the marker expression excludes `torch`."""
    if collection_path.name in TORCH_MODULES and "not torch" in (config.option.markexpr or ""):
        return True
    return None


@pytest.fixture(scope="session")
def seed_built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed (BOOK_ETAS, BOOK_STEPS), as `bpxl build` writes it (its values NumPy's): the
    workbook the verify and hostile-input tests spoil."""
    from _seed import BOOK_ETAS, BOOK_STEPS, seed

    from backprop_xlsx.mlp.workbook import build_workbook

    out = tmp_path_factory.mktemp("seed") / "built.xlsx"
    build_workbook(seed(), BOOK_ETAS, BOOK_STEPS, out)
    return out


@pytest.fixture(scope="session")
def seed_recalculated(seed_built: Path, soffice: str) -> Path:
    """The same workbook recalculated by real LibreOffice: formulas and an engine's values."""
    from backprop_xlsx.xlsx.libreoffice import recalculate

    return recalculate(seed_built, seed_built.with_name("recalculated.xlsx"))


@pytest.fixture(scope="session")
def students_dir() -> Path:
    """The course's 25 student workbooks: STUDENTS_DATA, by default ../shared/data/students
    beside the clone (read there, never copied into the repository)."""
    default = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "students"
    path = Path(os.environ.get("STUDENTS_DATA") or default)
    if not (path / "01_senthilva_ERA1.xlsx").is_file():
        _missing(f"the student workbooks are not in {path} (set STUDENTS_DATA)")
    return path


# Fixtures that start an outside program or read the MNIST files: a test that uses one, directly
# or through another fixture, is `slow`, so `-m "not slow"` runs the pure-Python tests alone.
OUTSIDE = frozenset(
    {"soffice", "ssconvert", "pdftoppm", "pdftotext", "ooxml_validate", "mnist_dir", "students_dir"}
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark `slow` every test that needs an outside program, MNIST or the student workbooks."""
    for item in items:
        if OUTSIDE.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> object:
    """In CI a skipped test is a failed test: nothing may silently not run there."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every test must run: {reason}"
