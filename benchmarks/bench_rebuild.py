"""Fresh build against rebuild of a workbook with one user sheet: time and peak memory.

    python benchmarks/bench_rebuild.py [--sizes 1x100000 6x10000] [--repeat 2] [--code DIR]

Each run is the real CLI (`python -m backprop_xlsx build`) in its own process; its peak RSS is
that process's own (os.wait4), its time the wall clock. A rebuild replaces a workbook that bpxl
built at the same size plus one user sheet (`Notes`, carried over), as a user rebuilds after
adding notes. Fresh and rebuild runs alternate, so both see the same load from other programs
on the machine; the best of --repeat counts. The target: rebuild ≤ 1.5 × fresh in
time and in memory. --code runs another checkout's CLI (e.g. an older commit) for comparison.
A script, not a timed test: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from _measure import measure

ROOT = Path(__file__).resolve().parent.parent
LRS = ("0.1", "0.2", "0.5", "0.8", "1", "2")


def run_cli(code: Path, args: list[str]) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of one `bpxl` run of checkout `code` (paths absolute)."""
    got = measure(code, *args)
    if got["rc"] != 0:
        raise SystemExit(f"bpxl {' '.join(args)} failed ({got['rc']}): {' '.join(got['lines'])}")
    return got["s"], got["rss"] / 2**20


def add_user_sheet(workbook: Path, folder: Path) -> None:
    """One user sheet, `Notes`, put into the workbook as mnist.train --workbook does."""
    import openpyxl

    sys.path.insert(0, str(ROOT))
    from backprop_xlsx.xlsx.transplant import transplant_sheets

    notes = folder / "notes.xlsx"
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "Notes"
    ws.append(["what", "value"])
    for k in range(50):
        ws.append([f"note {k}", k * 0.5])
    wb.save(notes)
    transplant_sheets(notes, workbook, ["Notes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1x100000", "6x10000"])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--code", type=Path, default=ROOT, help="checkout whose CLI to run")
    args = parser.parse_args()

    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; code: {args.code}")
    header = (
        f"{'size':>9} {'fresh s':>8} {'rebuild s':>9} {'ratio':>6}"
        f" {'fresh MB':>9} {'rebuild MB':>10} {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="bpxl-bench-rebuild-") as tmp:
        folder = Path(tmp)
        for size in args.sizes:
            n, steps = (int(x) for x in size.split("x"))
            common = ["build", "--lr", *LRS[:n], "--steps", str(steps)]
            seed = folder / "seed.xlsx"
            run_cli(args.code, [*common, "--out", str(seed)])
            add_user_sheet(seed, folder)
            fresh, rebuilt = [], []
            for _ in range(args.repeat):
                target = folder / "fresh.xlsx"
                target.unlink(missing_ok=True)
                fresh.append(run_cli(args.code, [*common, "--out", str(target)]))
                target = folder / "rebuilt.xlsx"
                shutil.copyfile(seed, target)
                rebuilt.append(run_cli(args.code, [*common, "--out", str(target)]))
            t_f, t_r = min(t for t, _ in fresh), min(t for t, _ in rebuilt)
            m_f, m_r = min(m for _, m in fresh), min(m for _, m in rebuilt)
            print(
                f"{size:>9} {t_f:>8.1f} {t_r:>9.1f} {t_r / t_f:>6.2f}"
                f" {m_f:>9.0f} {m_r:>10.0f} {m_r / m_f:>6.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
