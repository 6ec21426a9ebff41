"""Shared fixtures: real LibreOffice and the real MNIST files, never mocks.

Outside CI a missing `soffice` or `MNIST_DATA` skips the tests that need them; in CI (CI=true) it
fails them, so a green CI run always means LibreOffice and the MNIST files were really used.
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


@pytest.fixture(scope="session")
def soffice() -> str:
    """Path of the LibreOffice binary used for real recalculation."""
    path = shutil.which("soffice") or shutil.which("libreoffice")
    if path is None:
        _missing("LibreOffice (soffice) is not installed")
    return path


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
