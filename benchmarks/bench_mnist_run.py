"""The whole default run, timed: median of N, where the time goes, and the compute floor.

    python benchmarks/bench_mnist_run.py [--repeats 3] [--threads 2] [--workbook] [--seed 1]

`python -m mnist.train` from process start to exit, N times (`--workbook`: with a copy of
outputs/backprop.xlsx, as the README's run), split by the run's own phase timers (`whole_run`),
against the floor its multiply-adds would take at one large matmul's rate (`matmul_rate`): what
the run spends beyond it is what small convolutions cost on a CPU beyond their arithmetic.
A benchmark, not a test: it prints numbers, it asserts nothing. Data: MNIST_DATA or --data-dir.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TRAIN_IMAGES = 60_000


def matmul_rate(threads: int, n: int = 1024, seconds: float = 2.0) -> float:
    """Multiply-adds per second of torch.mm on n×n float32 matrices (best of repeated runs).

    The floor is multiply-adds per image × 60,000 × epochs × 3 (forward, and the backward's two
    products of the same size) at this rate: it leaves out the test passes, the warp, BatchNorm,
    the optimiser and every overhead."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        best, spent = float("inf"), 0.0
        while spent < seconds:
            t0 = time.perf_counter()
            torch.mm(a, b)
            dt = time.perf_counter() - t0
            best, spent = min(best, dt), spent + dt
        return n**3 / best
    finally:
        torch.set_num_threads(before)


def whole_run(cmd: list[str], env: dict[str, str]) -> tuple[float, dict[str, float], str]:
    """Seconds from start to exit, the run's own phases and its final line.

    The phases come from the run's last line (`time … = data … + train … + test … + …`);
    `outside` is what the process spent beyond its own timer (interpreter start, imports, exit).
    """
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    line = next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("time "))
    total = float(re.match(r"time ([\d.]+)s", line).group(1))
    phases = {k: float(v) for k, v in re.findall(r"(\w+) ([\d.]+)s", line.split("=", 1)[1])}
    phases["outside"] = wall - total
    final = next(ln for ln in proc.stdout.splitlines() if ln.startswith("final test accuracy"))
    return wall, phases, final


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("MNIST_DATA"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workbook", action="store_true", help="also write the workbook sheets")
    p.add_argument("--epochs", type=int, help="not the whole run: a quick check of this script")
    p.add_argument("--limit", type=int, help="not the whole run: a quick check of this script")
    args = p.parse_args()
    if not args.data_dir:
        sys.exit("error: give --data-dir or set MNIST_DATA to the folder with the IDX files")
    if args.repeats < 1:
        sys.exit("error: --repeats must be at least 1")
    import torch

    from mnist.model import MODELS, multiply_adds
    from mnist.training import RECIPES

    macs = multiply_adds(MODELS["ours"]())
    epochs = args.epochs or RECIPES["ours"].epochs
    images = args.limit or TRAIN_IMAGES
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )
    walls, phases = [], []
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        cmd = [sys.executable, "-m", "mnist.train", "--seed", str(args.seed), "--no-progress"]
        cmd += ["--data-dir", str(Path(args.data_dir).resolve()), "--out", f"{tmp}/out"]
        for flag, value in (("--threads", args.threads), ("--epochs", args.epochs)):
            if value:
                cmd += [flag, str(value)]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        if args.workbook:
            shutil.copy(ROOT / "outputs" / "backprop.xlsx", f"{tmp}/backprop.xlsx")
            cmd += ["--workbook", f"{tmp}/backprop.xlsx"]
        print("$ " + " ".join(["python", *cmd[1:]]).replace(tmp, "TMP"))
        for k in range(args.repeats):
            wall, spent, final = whole_run(cmd, env)
            walls.append(wall)
            phases.append(spent)
            parts = " + ".join(f"{n} {s:.1f}s" for n, s in spent.items())
            print(f"run {k + 1}: {wall:.1f}s = {parts}  ({final})", flush=True)
    median = statistics.median(walls)
    what = "a quick check, not the whole run" if args.epochs or args.limit else "whole default run"
    print(f"{what}, median of {args.repeats}: {median:.1f}s")
    print("where the time goes (median per phase):")
    for name in phases[0]:
        s = statistics.median(ph.get(name, 0.0) for ph in phases)
        print(f"  {name:14s} {s:6.1f}s  {100 * s / median:5.1f}%")
    work = macs * images * epochs * 3
    print(
        f"compute: {macs:,} multiply-adds per image × {images:,} images × {epochs} epochs "
        f"× 3 = {work / 1e9:.0f} G multiply-adds"
    )
    train_s = statistics.median(ph["train"] for ph in phases)
    for threads in (1, 2):
        rate = matmul_rate(threads)
        print(
            f"  matmul rate, {threads} thread(s): {rate / 1e9:.1f} G multiply-adds/s → floor "
            f"{work / rate:.1f}s (the training phase took {train_s:.1f}s, "
            f"{train_s * rate / work:.0f}× the floor)"
        )


if __name__ == "__main__":
    main()
