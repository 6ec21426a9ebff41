"""Build and verify time, and peak memory, for networks of any shape, at two sizes each.

    python benchmarks/bench_any.py [--cases relu-2-16-16-1 wide-4-32-32-2] [--keep DIR]
    python benchmarks/bench_any.py --cases relu-2-16-16-1 relu-2-16-16-1-b5   # mini-batches

Each case (`network_file`, random inputs in [-1, 1]) is built at two numbers of steps: a cost
linear in cells shows as the same cost per formula at both. `bpxl build` (timed), then `--recalc`
(untimed), then `bpxl verify` of the recalculated file (timed, so LibreOffice is not part of it),
each a fresh interpreter measured by `_measure`. A script, not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from _measure import measure

ROOT = Path(__file__).resolve().parent.parent

# name → (layers, activations, loss, samples, learning rates, (steps, steps))
CASES = {
    "relu-2-16-16-1": (
        [2, 16, 16, 1], ["relu", "relu", "linear"], "mse", 20, ["0.01"], (500, 1000),
    ),
    "tanh-3-10-10-2": (
        [3, 10, 10, 2], ["tanh", "tanh", "linear"], "mse", 30, ["0.01"], (100, 200),
    ),
    # 15,749 columns, the most of a 4-32-32-2 net (64 samples, the most there are); a sheet
    # has 16,384
    "wide-4-32-32-2": (
        [4, 32, 32, 2], ["relu", "relu", "linear"], "mse", 64, ["0.001"], (10, 20),
    ),
}  # fmt: skip
# mini-batch cases: name → (the case whose network file it trains, --batch-size); the full pass
# of all samples (E_train) makes a row wider than a full-batch row, still linear in steps
BATCH_CASES = {"relu-2-16-16-1-b5": ("relu-2-16-16-1", 5)}


def network_file(folder: Path, name: str) -> Path:
    name = BATCH_CASES.get(name, (name, 0))[0]
    layers, activations, loss, samples, _, _ = CASES[name]
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (samples, layers[0]))
    t = np.tanh(x @ rng.uniform(-1, 1, (layers[0], layers[-1])))
    path = folder / f"{name}.toml"
    path.write_text(
        f"layers = {layers}\nactivations = {json.dumps(activations)}\nloss = {json.dumps(loss)}\n"
        f"bias = true\nseed = 1\ninputs = {x.round(6).tolist()}\ntargets = {t.round(6).tolist()}\n"
    )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=[*CASES, *BATCH_CASES],
        default=["relu-2-16-16-1", "wide-4-32-32-2"],
    )
    parser.add_argument("--keep", type=Path, help="folder for the network files and workbooks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bpxl-bench-any-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        load = os.getloadavg()[0]
        print(f"{os.cpu_count()} CPUs, load average {load:.1f}")
        header = (
            f"{'case':<16}{'steps':>6}{'columns':>8}{'formulas':>11}{'build s':>8}{'MB':>6}"
            f"{'verify s':>9}{'MB':>6}{'µs/formula':>11}  verify"
        )
        print(header)
        print("-" * len(header))
        for name in args.cases:
            config = network_file(folder, name)
            base, batch_size = BATCH_CASES.get(name, (name, 0))
            lrs, sizes = CASES[base][4], CASES[base][5]
            batch = ["--batch-size", str(batch_size)] if batch_size else []
            for steps in sizes:
                out = folder / f"{name}-{steps}.xlsx"
                common = ["--config", str(config), "--steps", str(steps), "--lr", *lrs, *batch]
                build = measure(ROOT, "build", *common, "--out", str(out))
                if build["rc"] != 0:
                    print(f"{name:<16}{steps:>6}  build failed: {build['lines'][:1]}")
                    continue
                measure(ROOT, "build", *common, "--out", str(out), "--recalc")
                verify = measure(ROOT, "verify", str(out), "--json")
                report = json.loads("\n".join(verify["lines"])) if verify["lines"] else {}
                formulas = report.get("formula_cells_checked", 0)
                columns = formulas // (len(lrs) * (steps + 1)) if formulas else 0
                verdict = "OK" if report.get("ok") else f"rc {verify['rc']}"
                per = verify["s"] / formulas * 1e6 if formulas else float("nan")
                print(
                    f"{name:<16}{steps:>6}{columns:>8,}{formulas:>11,}{build['s']:>8.1f}"
                    f"{build['rss'] / 2**20:>6.0f}{verify['s']:>9.1f}{verify['rss'] / 2**20:>6.0f}"
                    f"{per:>11.2f}  {verdict}"
                )


if __name__ == "__main__":
    main()
