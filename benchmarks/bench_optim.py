"""Time `bpxl build --optimizer` and `bpxl verify` on the seed: 4 optimizers × N steps, one η.

    python benchmarks/bench_optim.py [--steps 2500 5000 10000] [--optimizers sgd momentum
                                      rmsprop adam] [--lr 0.1] [--repeat 3]

Per step count: the build (best of --repeat, in-process like the CLI, NumPy's runs included),
its cost per formula (flat across step counts means linear in steps × columns: the optimizers'
sheets have 32 to 64 columns), LibreOffice's recalculation (once; not a goal), and `bpxl
verify --engine cached` of the recalculated file, values cached as a user's saved workbook
holds them (best of --repeat), with its cost per formula. Goals on the project's 2-core
machine at 10,000 steps: build ≤ 10 s and verify ≤ 10 s. A script, not a timed test: the
numbers depend on the machine and on what else runs on it (the load average is printed).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _measure import timed

from backprop_xlsx.mlp import description, layout
from backprop_xlsx.mlp.optim import HYPERPARAMETERS, hyper_keys
from backprop_xlsx.mlp.workbook import build_workbook
from backprop_xlsx.verify.workbook import verify_workbook
from backprop_xlsx.xlsx.libreoffice import find_soffice, recalculate


def best(repeat: int, fn, *args, **kwargs) -> float:  # type: ignore[no-untyped-def]
    """The fastest of `repeat` calls, in seconds."""
    return min(timed(fn, *args, **kwargs)[0] for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[2500, 5000, 10000])
    parser.add_argument("--optimizers", nargs="+", default=["sgd", "momentum", "rmsprop", "adam"])
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if find_soffice() is None:
        sys.exit("LibreOffice is needed for the cached values verify reads")
    network = description.preset("seed")
    shown = {k: HYPERPARAMETERS[k].default for k in hyper_keys(args.optimizers)}
    columns = sum(
        len(layout.SheetLayout(network, optimizer=o, hyper=shown).columns) for o in args.optimizers
    )
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} before")
    print(f"seed, η {args.lr:g}, {', '.join(args.optimizers)}: {columns} columns a row in all")
    header = (
        f"{'steps':>7} {'formulas':>10} {'build s':>8} {'µs/formula':>10} {'LO recalc s':>11} "
        f"{'verify s':>9} {'µs/formula':>10}  verify"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="bpxl-bench-optim-") as tmp:
        for steps in args.steps:
            out = Path(tmp) / f"optim{steps}.xlsx"
            built = best(
                args.repeat, build_workbook, network, [args.lr], steps, out,
                optimizers=args.optimizers,
            )  # fmt: skip
            formulas = (steps + 1) * columns
            recalculated = Path(tmp) / f"optim{steps}-lo.xlsx"
            start = time.perf_counter()
            recalculate(out, recalculated)
            lo = time.perf_counter() - start
            report = verify_workbook(recalculated, engine="cached")
            checked = best(args.repeat, verify_workbook, recalculated, engine="cached")
            print(
                f"{steps:>7,} {formulas:>10,} {built:>8.2f} {1e6 * built / formulas:>10.2f} "
                f"{lo:>11.1f} {checked:>9.2f} {1e6 * checked / formulas:>10.2f}  "
                f"{'OK' if report.ok else 'FINDINGS'}"
            )
    print(f"load average {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
