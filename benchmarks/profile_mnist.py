"""Where a training step's time goes: torch.profiler over steps of a model on random digits.

    python benchmarks/profile_mnist.py [--model ours|wide|seed] [--batch-size 128] [--threads 1]
        [--steps 20] [--contiguous]

One step is what mnist.training.train() does per batch: the batched warp, forward, loss,
backward, SGD step. Prints the operators by their own CPU time, then the milliseconds per step.
`--contiguous` keeps the default memory format instead of channels_last. A benchmark, not a
test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn.functional as F
from torch.profiler import profile

from mnist.augment import random_affine
from mnist.model import MODELS
from mnist.training import RECIPES


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=list(MODELS), default="ours")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--contiguous", action="store_true", help="not channels_last")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    fmt = torch.contiguous_format if args.contiguous else torch.channels_last
    recipe = RECIPES[args.model]
    model = MODELS[args.model]().to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(args.batch_size, 1, 28, 28)
    y = torch.randint(0, 10, (args.batch_size,))
    g = torch.Generator().manual_seed(0)

    def step() -> None:
        out = model(random_affine(x, g, recipe.augment).contiguous(memory_format=fmt))
        loss = F.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(5):
        step()
    with profile() as prof:
        for _ in range(args.steps):
            step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    ms = (time.perf_counter() - start) / args.steps * 1000
    print(
        f"{args.model}, batch {args.batch_size}, {args.threads} thread(s), "
        f"{'contiguous' if args.contiguous else 'channels_last'}: {ms:.1f} ms per step, "
        f"{ms * 60_000 / args.batch_size / 1000:.1f} s per 60,000 images"
    )


if __name__ == "__main__":
    main()
