"""Timing shared by the benchmark scripts: one call in-process, or one bpxl command on its own.

`measure` runs this file as a small parent (it imports nothing but the standard library), which
runs `python -m backprop_xlsx ARGS` and prints its wall time, peak RSS and output as JSON. The
peak is the child's `ru_maxrss` (RUSAGE_CHILDREN): it holds the largest child so far, and Linux
counts in a child's peak the parent it was forked from, so each child needs a fresh small parent.
The scripts import it as `_measure`: run as `python benchmarks/bench_x.py`, their folder is first
on sys.path.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Seconds `fn(*args, **kwargs)` took, and what it returned."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def child(code: str, *args: str) -> None:
    """Run one bpxl command of checkout `code`; print its seconds, peak RSS, exit code and output
    lines as JSON."""
    env = {**os.environ, "PYTHONPATH": code}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "backprop_xlsx", *args],
        cwd=code,  # `-m` looks in the working folder first: it must be the checkout timed
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    lines = (proc.stdout or proc.stderr).splitlines()
    print(json.dumps({"s": seconds, "rss": peak, "rc": proc.returncode, "lines": lines}))


def measure(code: Path, *args: str) -> dict:
    """`bpxl ARGS` of checkout `code`, run from a fresh small parent: {s, rss, rc, lines}."""
    out = subprocess.run(
        [sys.executable, __file__, str(code), *args], capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out)


if __name__ == "__main__":
    child(*sys.argv[1:])
