"""The real `bpxl` CLI in its own process, as a user runs it, for the tests that need one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def bpxl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m backprop_xlsx ARGS` from this checkout, with a bare PATH."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "backprop_xlsx", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )
