"""The real `bpxl` CLI in its own process, as a user runs it, for the tests that need one, and
the /proc scans that tell what it left running."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
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


def start(args: list[str], env: Mapping[str, str]) -> subprocess.Popen[str]:
    """`python -m backprop_xlsx ARGS` started, not waited for: to signal it mid-run."""
    return subprocess.Popen(
        [sys.executable, "-m", "backprop_xlsx", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
    )


def processes(text: str) -> dict[int, str]:
    """Live processes (not zombies, not this one) whose command line contains `text`:
    pid → program name. A /proc scan, no psutil."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            if text.encode() in cmdline and state != "Z":
                found[int(entry.name)] = Path(cmdline.split(b"\0")[0].decode()).name
    return found


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    """Whether `condition` came true within `seconds` (polled every 50 ms)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
