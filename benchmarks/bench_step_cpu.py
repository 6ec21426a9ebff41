"""CPU time of one training step for nets of different widths, measured side by side.

    python benchmarks/bench_step_cpu.py [--rounds 8] [--steps 10] [--threads 1]

One step is what mnist.training.train() does per batch of the default recipe (batch 256): the
warp, forward, loss, backward, SGD step. The nets take turns, `--steps` steps at a time, and
each turn is timed by the process's CPU time (time.process_time), which other work on a busy
machine changes less than it changes the wall clock. Prints the median and the least turn per
step. Multiply-adds predict these times badly for nets this small: most of a step is the
full-resolution conv, the warp and per-layer overhead. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F

from mnist.augment import random_affine
from mnist.model import GapNet, count_params, multiply_adds
from mnist.training import RECIPES

WIDTHS = ((8, 10, 12, 12, 14), (8, 10, 12, 16, 20), (8, 12, 16, 16, 16))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    recipe = RECIPES["ours"]
    x = torch.randn(recipe.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (recipe.batch_size,))
    g = torch.Generator().manual_seed(0)
    nets = {}
    for widths in WIDTHS:
        net = GapNet(widths, pool_after=1).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        nets[widths] = (net, opt)

    def step(net: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        warped = random_affine(x, g, recipe.augment).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(net(warped), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for net, opt in nets.values():
        for _ in range(5):
            step(net, opt)
    turns: dict[tuple[int, ...], list[float]] = {w: [] for w in nets}
    for _ in range(args.rounds):
        for widths, (net, opt) in nets.items():
            t0 = time.process_time()
            for _ in range(args.steps):
                step(net, opt)
            turns[widths].append((time.process_time() - t0) / args.steps * 1000)
    for widths, (net, _) in nets.items():
        print(
            f"widths {widths}: {count_params(net):,} parameters, {multiply_adds(net):,} "
            f"multiply-adds; CPU ms per step: median {statistics.median(turns[widths]):.1f}, "
            f"least {min(turns[widths]):.1f}"
        )


if __name__ == "__main__":
    main()
