"""Time `bpxl verify` and measure its peak memory on workbooks with cached values.

    python benchmarks/bench_verify.py [--sizes 6x10000 1x100000] [--repeat 3]
                                      [--code . /path/to/other/checkout] [--keep DIR]

Each workbook is built and recalculated once by LibreOffice (`workbook`), so it carries values
as a user's saved file does. Each verify runs as a user runs it, in a fresh interpreter, with each
--code checkout on PYTHONPATH: several checkouts side by side in one sitting, since only ratios
compare on a shared machine. Time is the best of --repeat; peak RSS is measured by `_measure`.
Targets: 6 × 10,000 steps in ≤ 5 s and ≤ 300 MB; 1 × 100,000 steps in ≤ 500 MB.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _measure import measure

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {(6, 10_000): (5.0, 300), (1, 100_000): (None, 500)}  # seconds, MB
DEFAULT_LRS = ("0.1", "0.2", "0.5", "0.8", "1", "2")


def workbook(folder: Path, n_lr: int, steps: int) -> Path:
    """A built and LibreOffice-recalculated workbook, reused if `folder` already has it."""
    path = folder / f"verify-{n_lr}x{steps}.xlsx"
    if path.exists():
        return path
    lrs = (
        DEFAULT_LRS[:n_lr]
        if n_lr <= len(DEFAULT_LRS)
        else [str(0.1 * i) for i in range(1, n_lr + 1)]
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "backprop_xlsx", "build", "--lr", *lrs, "--steps", str(steps),
         "--out", str(path), "--recalc"],
        env=env,
        check=True,
        capture_output=True,
    )  # fmt: skip
    print(f"(built and recalculated {path.name} in {time.perf_counter() - start:.0f} s)")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["6x10000", "1x100000"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--code", nargs="+", type=Path, default=[ROOT], help="checkouts to time")
    parser.add_argument("--keep", type=Path, help="folder to keep the workbooks in and reuse")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from backprop_xlsx.xlsx.libreoffice import find_soffice

    if find_soffice() is None:
        sys.exit("LibreOffice is needed to give the workbooks cached values: install it")
    sizes = [tuple(int(x) for x in size.split("x")) for size in args.sizes]
    with tempfile.TemporaryDirectory(prefix="bpxl-bench-verify-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        books = {size: workbook(folder, *size) for size in sizes}
        load = os.getloadavg()[0]
        print(f"{os.cpu_count()} CPUs, load average {load:.1f}; best of {args.repeat}")
        header = (
            f"{'workbook':<16}{'MB':>6}  {'code':<28}{'verify s':>9}{'peak MB':>9}{'exit':>5}"
            f"  target"
        )
        print(header)
        print("-" * len(header))
        for size, path in books.items():
            for code in args.code:
                runs = [
                    measure(code.resolve(), "verify", str(path.resolve()))
                    for _ in range(args.repeat)
                ]
                best = min(r["s"] for r in runs)
                peak = max(r["rss"] for r in runs) / 2**20
                seconds, mb = TARGETS.get(size, (None, None))
                target = " ".join(
                    [f"≤ {seconds:g} s" if seconds else "", f"≤ {mb} MB" if mb else ""]
                ).strip()
                label = f"{size[0]} × {size[1]:,}"
                print(
                    f"{label:<16}{path.stat().st_size / 1e6:>6.1f}  {str(code)[-28:]:<28}"
                    f"{best:>9.2f}{peak:>9.0f}{runs[0]['rc']:>5}  {target}"
                )
                if runs[0]["rc"] != 0:
                    print(f"  ({runs[0]['lines'][:1]})")


if __name__ == "__main__":
    main()
