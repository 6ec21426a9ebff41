"""Time the Gradient check sheet at its size limit's end: a 2-16-16-1 tanh network.

    python benchmarks/bench_gradcheck.py [--samples 20] [--steps 10]

Builds the network on `--samples` points of the plane with `--gradient-check` (one learning
rate), then times: the build, LibreOffice's full recalculation, and `bpxl verify` of the
recalculated copy (its cached values: every LR and gradient-check cell against NumPy). Prints the
sheet's formulas and the file size too. 20 samples give 891,702 gradient-check formulas, near
MAX_FORMULAS. A script, not a timed test: numbers depend on the machine and what else runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _measure import timed

from backprop_xlsx.mlp import description
from backprop_xlsx.mlp.workbook import build_workbook
from backprop_xlsx.verify.workbook import verify_workbook
from backprop_xlsx.xlsx.libreoffice import recalculate


def network(samples: int) -> description.Network:
    rng = np.random.default_rng(1)
    points = rng.uniform(-1, 1, (samples, 2)).round(2)
    inside = (points**2).sum(axis=1) < 0.45
    return description.from_mapping(
        {
            "layers": [2, 16, 16, 1],
            "activations": ["tanh", "tanh", "sigmoid"],
            "bias": True,
            "inputs": points.tolist(),
            "targets": [[float(x)] for x in inside],
            "seed": 1,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        built, recalculated = Path(tmp) / "built.xlsx", Path(tmp) / "recalculated.xlsx"
        net = network(args.samples)
        seconds, line = timed(build_workbook, net, [0.5], args.steps, built, gradient_check=True)
        print(f"build      {seconds:6.1f} s  {line.splitlines()[0]}")
        print(f"file       {built.stat().st_size / 1e6:6.1f} MB")
        seconds, _ = timed(recalculate, built, recalculated)
        print(f"LibreOffice{seconds:6.1f} s  full recalculation")
        seconds, report = timed(verify_workbook, recalculated, engine="cached")
        print(f"verify     {seconds:6.1f} s  ok={report.ok}, {report.gradcheck_cells:,} cells")


if __name__ == "__main__":
    main()
