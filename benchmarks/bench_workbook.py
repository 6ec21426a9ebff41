"""Time `bpxl build` and `bpxl verify`: the seed on 6 learning rates × 1,000 and × 10,000
steps, and xor on 6 learning rates × 2,000 steps.

    python benchmarks/bench_workbook.py [--runs seed:1000 seed:10000 xor:2000] [--repeat 3]
                                        [--no-verify]

Prints one table row per run: the build time (best of --repeat, in-process like the CLI; it
includes NumPy's run and writing its value into every formula cell), its cost per formula (flat
means linear in cells), the file size, `bpxl verify` as a user runs it on the fresh file (auto:
LibreOffice recalculates a copy, then NumPy checks), and apart: the LibreOffice recalculation
alone, and `bpxl verify --engine cached` of the recalculated file (its cost per formula).
A script, not a timed test: the numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _measure import timed

from backprop_xlsx.cli import DEFAULT_LRS
from backprop_xlsx.mlp import description, layout
from backprop_xlsx.mlp.workbook import build_workbook

ETAS = {"seed": list(DEFAULT_LRS), "xor": [0.5, 1.0, 2.0, 3.0, 5.0, 8.0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["seed:1000", "seed:10000", "xor:2000"])
    parser.add_argument("--repeat", type=int, default=3, help="builds per size; the best counts")
    parser.add_argument("--no-verify", action="store_true", help="time the build only")
    args = parser.parse_args()

    verify = None
    if not args.no_verify:
        from backprop_xlsx.verify.workbook import verify_workbook
        from backprop_xlsx.xlsx.libreoffice import find_soffice, recalculate

        if find_soffice() is None:
            print("(LibreOffice not found: verify not timed)")
        else:
            verify = verify_workbook

    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} CPUs, load average {load:.1f}")
    header = (
        f"{'preset':>6} {'η':>2} {'steps':>7} {'formulas':>10} {'build s':>8} {'µs/formula':>10}"
        f" {'MB':>6} {'verify s':>9} {'LO recalc s':>11} {'cached s':>9} {'µs/formula':>10}  verify"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="bpxl-bench-") as tmp:
        for run in args.runs:
            name, steps_text = run.split(":")
            steps = int(steps_text)
            network, etas = description.preset(name), ETAS[name]
            out = Path(tmp) / f"{name}{steps}.xlsx"
            best = min(
                timed(build_workbook, network, etas, steps, out)[0] for _ in range(args.repeat)
            )
            sheet = layout.SheetLayout(network)
            formulas = len(etas) * (steps + 1) * len(sheet.columns)
            row = (
                f"{name:>6} {len(etas):>2} {steps:>7,} {formulas:>10,} {best:>8.2f}"
                f" {best / formulas * 1e6:>10.2f} {out.stat().st_size / 1e6:>6.1f}"
            )
            if verify is not None:
                t_verify, report = timed(verify, out, engine="auto")
                recalculated = Path(tmp) / f"r{steps}.xlsx"
                t_lo, _ = timed(recalculate, out, recalculated)
                t_cached, cached = timed(verify, recalculated, engine="cached")
                verdict = "ok" if report.ok and cached.ok else "FINDINGS"
                row += (
                    f" {t_verify:>9.1f} {t_lo:>11.1f} {t_cached:>9.1f}"
                    f" {t_cached / formulas * 1e6:>10.2f}  {verdict}"
                )
            print(row, flush=True)


if __name__ == "__main__":
    main()
