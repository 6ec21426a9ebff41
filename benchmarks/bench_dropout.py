"""nn.Dropout against GapDropout: forward and backward through the seed net's three masks.

    python benchmarks/bench_dropout.py [--batch-size 128] [--steps 30] [--rounds 3]

The masks of one training step of `--model seed` (p = 0.02 on 8×26×26, 16×24×24 and 32×10×10
maps per digit, channels_last as training feeds them), with 1 and 2 torch threads, the two
layers taking turns within each round. Prints milliseconds per step. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn as nn

from mnist.dropout import GapDropout

SHAPES = ((8, 26, 26), (16, 24, 24), (32, 10, 10))


def ms_per_step(layer: nn.Module, xs: list[torch.Tensor], steps: int) -> float:
    for _ in range(3):
        sum(layer(x).sum() for x in xs).backward()
    start = time.perf_counter()
    for _ in range(steps):
        sum(layer(x).sum() for x in xs).backward()
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    torch.manual_seed(0)
    xs = [
        torch.randn(args.batch_size, *s)
        .contiguous(memory_format=torch.channels_last)
        .requires_grad_()
        for s in SHAPES
    ]
    layers = {"nn.Dropout": nn.Dropout(0.02), "GapDropout": GapDropout(0.02)}
    times: dict[tuple[int, str], list[float]] = {}
    for _ in range(args.rounds):
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for name, layer in layers.items():
                times.setdefault((threads, name), []).append(ms_per_step(layer, xs, args.steps))
    elements = sum(x.numel() for x in xs)
    print(f"{elements:,} elements per step, torch {torch.__version__}, median of {args.rounds}:")
    for (threads, name), ts in times.items():
        print(
            f"  {threads} thread{'s' if threads > 1 else ' '}  {name:<10} "
            f"{statistics.median(ts):6.2f} ms  (all: {', '.join(f'{t:.2f}' for t in ts)})"
        )


if __name__ == "__main__":
    main()
